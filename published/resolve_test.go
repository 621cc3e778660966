package published

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/testnet"
	"github.com/mailtls/mailtls/policyd"
)

const tlsaData = "3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func hasNote(res Result, sub string) bool {
	for _, n := range res.Evidence.Notes {
		if strings.Contains(n, sub) {
			return true
		}
	}
	return false
}

func wantAnswer(t *testing.T, res Result, src Source, policy string) {
	t.Helper()
	if res.Source != src || res.Policy != policy {
		t.Errorf("%s: got %s %q, want %s %q; notes:\n  %s", res.Domain, res.Source, res.Policy, src, policy,
			strings.Join(res.Evidence.Notes, "\n  "))
	}
	if policy != "" {
		if _, err := policyd.ParsePolicy(policy); err != nil {
			t.Errorf("%s: answer %q is not a valid policy: %v", res.Domain, policy, err)
		}
	}
}

// TestDANE: every MX with validated usable TLSA records gives dane-only,
// some give dane; without the AD bit, with an unvalidated MX answer, with
// only PKIX usages, or from a resolver not on loopback, DANE does not
// apply and MTA-STS (or the default) answers.
func TestDANE(t *testing.T) {
	e := newEnv(t)
	z := e.zone
	for _, d := range []string{"all.example", "mixed.example", "pkix.example", "unsignedmx.example", "dane.example", "nosig.example"} {
		z.Sign(d)
	}
	z.Add(t,
		// every MX has TLSA
		"all.example. 300 IN MX 10 mx1.all.example.", "all.example. 300 IN MX 20 mx2.all.example.",
		"mx1.all.example. 300 IN A 127.0.0.1", "mx2.all.example. 300 IN A 127.0.0.1",
		"_25._tcp.mx1.all.example. 300 IN TLSA "+tlsaData, "_25._tcp.mx2.all.example. 300 IN TLSA 2 0 1 "+strings.Repeat("ab", 32),
		// one of two
		"mixed.example. 300 IN MX 10 mx1.mixed.example.", "mixed.example. 300 IN MX 20 mx2.mixed.example.",
		"mx1.mixed.example. 300 IN A 127.0.0.1", "mx2.mixed.example. 300 IN A 127.0.0.1",
		"_25._tcp.mx1.mixed.example. 300 IN TLSA "+tlsaData,
		// PKIX usages only: not for SMTP (RFC 7672 §3.1.3)
		"pkix.example. 300 IN MX 10 mx1.pkix.example.", "mx1.pkix.example. 300 IN A 127.0.0.1",
		"_25._tcp.mx1.pkix.example. 300 IN TLSA 1 1 1 "+strings.Repeat("cd", 32),
		// TLSA signed, MX answer not
		"mxunsigned.example. 300 IN MX 10 mx1.unsignedmx.example.", "mx1.unsignedmx.example. 300 IN A 127.0.0.1",
		"_25._tcp.mx1.unsignedmx.example. 300 IN TLSA "+tlsaData,
		// TLSA without AD, MTA-STS enforce: MTA-STS answers
		"nosig.example. 300 IN MX 10 mx1.nosighost.example.", "mx1.nosighost.example. 300 IN A 127.0.0.1",
		"_25._tcp.mx1.nosighost.example. 300 IN TLSA "+tlsaData,
		// DANE and MTA-STS: DANE wins (RFC 8461 §2)
		"dane.example. 300 IN MX 10 mx1.dane.example.", "mx1.dane.example. 300 IN A 127.0.0.1",
		"_25._tcp.mx1.dane.example. 300 IN TLSA "+tlsaData,
	)
	e.sts("nosig.example", "1")
	e.policy("nosig.example", "version: STSv1\nmode: enforce\nmx: mx1.nosighost.example\nmax_age: 86400\n")
	e.sts("dane.example", "1")
	e.policy("dane.example", "version: STSv1\nmode: enforce\nmx: mx1.dane.example\nmax_age: 86400\n")
	r := e.resolver(nil)

	res := resolve(t, r, "all.example")
	wantAnswer(t, res, SourceDANE, "dane-only")
	if len(res.Evidence.MX) != 2 || !res.Evidence.MX[0].Usable || res.Evidence.MX[0].TLSA[0] != tlsaData || !res.Evidence.MXAuthenticated {
		t.Errorf("all.example evidence: %+v", res.Evidence)
	}
	res = resolve(t, r, "mixed.example")
	wantAnswer(t, res, SourceDANE, "dane")
	if !res.Evidence.MX[0].Usable || res.Evidence.MX[1].Usable || !hasNote(res, "1 of 2 MX hosts") {
		t.Errorf("mixed.example evidence: %+v", res.Evidence)
	}
	wantAnswer(t, resolve(t, r, "pkix.example"), SourceNone, "")
	res = resolve(t, r, "mxunsigned.example")
	wantAnswer(t, res, SourceNone, "")
	if !hasNote(res, "MX records of mxunsigned.example are not DNSSEC-validated") {
		t.Errorf("mxunsigned notes: %q", res.Evidence.Notes)
	}
	res = resolve(t, r, "nosig.example")
	wantAnswer(t, res, SourceMTASTS, "secure match=mx1.nosighost.example servername=hostname")
	if !hasNote(res, "no MX host has DNSSEC-validated usable TLSA records") || len(res.Evidence.MX) != 1 ||
		res.Evidence.MX[0].Authenticated || len(res.Evidence.MX[0].TLSA) != 1 {
		t.Errorf("nosig evidence: %+v", res.Evidence)
	}
	res = resolve(t, r, "dane.example")
	wantAnswer(t, res, SourceDANE, "dane-only")
	if !hasNote(res, "DANE takes precedence") || e.fetchCount("dane.example") != 0 {
		t.Errorf("dane.example: notes %q, %d policy fetches", res.Evidence.Notes, e.fetchCount("dane.example"))
	}

	// A resolver not on loopback: the AD bit is not trusted.
	untrusted := e.resolver(func(c *Config) { c.TrustAD = false; c.Resolver = "192.0.2.53:53" })
	res = resolve(t, untrusted, "all.example")
	wantAnswer(t, res, SourceNone, "")
	if !hasNote(res, "192.0.2.53:53 is not on loopback") || res.Evidence.ADTrusted {
		t.Errorf("untrusted: %+v", res.Evidence)
	}
}

// TestMTASTS: enforce gives the secure answer; testing and none give the
// default but testing is kept with the answer enforce would give; an MX
// that matches no pattern is named; a policy too large, too slow or
// refused gives the default.
func TestMTASTS(t *testing.T) {
	e := newEnv(t)
	z := e.zone
	for _, d := range []string{"sts", "testing", "none", "mismatch", "big", "slow", "fail"} {
		dom := d + ".example"
		z.Add(t, dom+". 300 IN MX 10 mx1."+dom+".", "mx1."+dom+". 300 IN A 127.0.0.1")
		e.sts(dom, "20260101")
	}
	z.Add(t, "sts.example. 300 IN MX 20 mx2.sts.example.", "mx2.sts.example. 300 IN A 127.0.0.1",
		"mismatch.example. 300 IN MX 20 other.elsewhere.example.")
	e.policy("sts.example", "version: STSv1\r\nmode: enforce\r\nmx: *.sts.example\r\nmx: backup.example.net\r\nmax_age: 86400\r\n")
	e.policy("testing.example", "version: STSv1\nmode: testing\nmx: mx1.testing.example\nmax_age: 604800\n")
	e.policy("none.example", "version: STSv1\nmode: none\nmax_age: 86400\n")
	e.policy("mismatch.example", "version: STSv1\nmode: enforce\nmx: mx1.mismatch.example\nmax_age: 86400\n")
	e.policy("big.example", "version: STSv1\nmode: enforce\nmx: mx1.big.example\nmax_age: 86400\n"+strings.Repeat("x: y\n", 70000/5))
	e.setSlow("slow.example")
	e.setStatus("fail.example", 500)
	r := e.resolver(func(c *Config) { c.FetchTimeout = 300 * time.Millisecond })

	res := resolve(t, r, "sts.example")
	wantAnswer(t, res, SourceMTASTS, "secure match=.sts.example:backup.example.net servername=hostname")
	if s := res.Evidence.MTASTS; s == nil || s.ID != "20260101" || s.MaxAge != 86400 || s.Mode != "enforce" ||
		!s.Expires.Equal(testNowPlus(86400)) || !hasNote(res, "MX records of sts.example are not DNSSEC-validated") {
		t.Errorf("sts evidence: %+v %+v", res.Evidence, res.Evidence.MTASTS)
	}

	res = resolve(t, r, "testing.example")
	wantAnswer(t, res, SourceNone, "")
	if s := res.Evidence.MTASTS; s == nil || s.Mode != "testing" || s.Answer != "secure match=mx1.testing.example servername=hostname" ||
		!hasNote(res, "mode testing") {
		t.Errorf("testing evidence: %+v %+v", res.Evidence, res.Evidence.MTASTS)
	}
	wantAnswer(t, resolve(t, r, "none.example"), SourceNone, "")

	res = resolve(t, r, "mismatch.example")
	wantAnswer(t, res, SourceMTASTS, "secure match=mx1.mismatch.example servername=hostname")
	if !hasNote(res, "MX other.elsewhere.example matches no MTA-STS mx pattern") {
		t.Errorf("mismatch notes: %q", res.Evidence.Notes)
	}
	var matched, unmatched bool
	for _, m := range res.Evidence.MX {
		if m.STSMatch != nil {
			matched = matched || m.Host == "mx1.mismatch.example" && *m.STSMatch
			unmatched = unmatched || m.Host == "other.elsewhere.example" && !*m.STSMatch
		}
	}
	if !matched || !unmatched {
		t.Errorf("mismatch MX evidence: %+v", res.Evidence.MX)
	}

	for d, why := range map[string]string{"big.example": "larger than 65536 bytes", "slow.example": "no answer within 300ms",
		"fail.example": "HTTP 500"} {
		res := resolve(t, r, d)
		wantAnswer(t, res, SourceNone, "")
		if !hasNote(res, why) {
			t.Errorf("%s: notes %q, want %q", d, res.Evidence.Notes, why)
		}
	}
	wantAnswer(t, resolve(t, r, "unknown.example"), SourceNone, "")
}

func testNowPlus(sec int) time.Time { return testnet.Now.Add(time.Duration(sec) * time.Second) }

// TestNotDomain: bracketed and port next-hops get nothing, without DNS.
func TestNotDomain(t *testing.T) {
	e := newEnv(t)
	r := e.resolver(nil)
	for _, k := range []string{"[mx.example.com]", "[mx.example.com]:25", "example.com:587", ".example.com", ""} {
		if res := resolve(t, r, k); res.Source != SourceNone || !hasNote(res, "not a destination domain") {
			t.Errorf("%q: %+v", k, res)
		}
	}
	if n := e.zone.Count("mx.example.com", dns.TypeMX) + e.zone.Count("example.com", dns.TypeMX); n != 0 {
		t.Errorf("%d DNS queries for non-domain keys", n)
	}
}

func TestADTrusted(t *testing.T) {
	for s, want := range map[string]bool{"127.0.0.1:53": true, "127.0.0.53:53": true, "[::1]:53": true, "::1": true,
		"127.0.0.1": true, "192.0.2.1:53": false, "localhost:53": false, "[2001:db8::1]:53": false, "": false} {
		if got := ADTrusted([]string{s}); got != want {
			t.Errorf("ADTrusted(%q) = %v", s, got)
		}
	}
	if ADTrusted([]string{"127.0.0.1:53", "192.0.2.1:53"}) || ADTrusted(nil) {
		t.Error("a non-loopback server among them, or none, must not be trusted")
	}
}

// TestSourcesOff: a source turned off is neither asked nor used.
func TestSourcesOff(t *testing.T) {
	e := newEnv(t)
	z := e.zone
	z.Sign("dane.example")
	z.Add(t, "dane.example. 300 IN MX 10 mx1.dane.example.", "mx1.dane.example. 300 IN A 127.0.0.1",
		"_25._tcp.mx1.dane.example. 300 IN TLSA "+tlsaData)
	e.sts("dane.example", "1")
	e.policy("dane.example", "version: STSv1\nmode: enforce\nmx: mx1.dane.example\nmax_age: 86400\n")
	noDANE := e.resolver(func(c *Config) { c.NoDANE = true })
	res := resolve(t, noDANE, "dane.example")
	wantAnswer(t, res, SourceMTASTS, "secure match=mx1.dane.example servername=hostname")
	if !hasNote(res, "DANE is turned off") || z.Count("_25._tcp.mx1.dane.example", dns.TypeTLSA) != 0 {
		t.Errorf("DANE off: notes %q, %d TLSA queries", res.Evidence.Notes, z.Count("_25._tcp.mx1.dane.example", dns.TypeTLSA))
	}
	onlyDANE := e.resolver(func(c *Config) { c.NoDANE, c.NoMTASTS = true, true })
	res = resolve(t, onlyDANE, "dane.example")
	wantAnswer(t, res, SourceNone, "")
	if !hasNote(res, "MTA-STS is turned off") || e.fetchCount("dane.example") != 1 {
		t.Errorf("both off: notes %q, %d fetches (want the 1 from before)", res.Evidence.Notes, e.fetchCount("dane.example"))
	}
}
