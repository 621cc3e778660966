package discover

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/mtasts"
	"github.com/mailtls/mailtls/policyd"
)

// testEnv is a small Internet on 127.0.0.1: a DNS server with the test
// zones, SMTP servers of every kind, and an HTTPS server for MTA-STS
// policies, all trusting one test CA.
type testEnv struct {
	t       *testing.T
	zone    *testZone
	dns     string
	ca      *testCA
	router  *router
	stsPort int
	good    string // TLSA 3 1 1 data of the good server's certificate
}

const smtpPort = "2525"

// policies served by the MTA-STS HTTPS server, by host.
var testPolicies = map[string]struct {
	ctype, body string
}{
	"mta-sts.sts.example":         {"text/plain", "version: STSv1\r\nmode: enforce\r\nmx: *.sts.example\r\nmx: mail.other.example\r\nmax_age: 86400\r\n"},
	"mta-sts.stsmismatch.example": {"text/plain; charset=utf-8", "version: STSv1\nmode: enforce\nmx: mx9.elsewhere.example\nmax_age: 86400\n"},
	"mta-sts.testing.example":     {"text/plain", "version: STSv1\nmode: testing\nmx: *.testing.example\nmax_age: 604800\n"},
	"mta-sts.badpolicy.example":   {"text/plain", "version: STSv1\nmode: enforced\nmx: *.badpolicy.example\nmax_age: 86400\n"},
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	e := &testEnv{t: t, zone: newTestZone(), ca: newTestCA(t)}
	e.router = &router{t: t, port: smtpPort, routes: map[string]string{}}
	valid := func(names ...string) *tls.Certificate {
		c := leaf(t, e.ca, testNow.AddDate(0, -3, 0), testNow.AddDate(0, 9, 0), names...)
		return &c
	}
	goodNames := []string{
		"mx1.dane.example", "mx2.dane.example", "mx1.danebad.example", "mx1.daneunsigned.example",
		"mx1.danepart.example", "mx1.sts.example", "mail.other.example", "mx1.stsmismatch.example",
		"mx1.testing.example", "mx1.badpolicy.example", "mx1.verify.example", "mx1.encrypt.example",
		"mx1.may.example", "implicit.example",
	}
	goodCert := valid(goodNames...)
	e.good = tlsa311(*goodCert)
	good := startSMTP(t, smtpNormal, goodCert)
	for _, n := range goodNames {
		e.router.route(n, good)
	}
	self := leaf(t, nil, testNow.AddDate(0, -3, 0), testNow.AddDate(0, 9, 0), "mx2.encrypt.example")
	e.router.route("mx2.encrypt.example", startSMTP(t, smtpNormal, &self))
	expired := leaf(t, e.ca, testNow.AddDate(-1, 0, 0), testNow.AddDate(0, -1, 0), "mx3.encrypt.example")
	e.router.route("mx3.encrypt.example", startSMTP(t, smtpNormal, &expired))
	e.router.route("mx4.encrypt.example", startSMTP(t, smtpNormal, valid("unrelated.example")))
	plain := startSMTP(t, smtpNormal, nil)
	e.router.route("mx2.may.example", plain)
	e.router.route("mx2.danepart.example", plain)
	e.router.route("mx1.closes.example", startSMTP(t, smtpCloseAfterGreet, nil))
	e.router.route("mx1.blackhole.example", startSMTP(t, smtpBlackHole, nil))

	// MTA-STS policy host: one HTTPS server, a certificate for every
	// policy host, the policy picked by Host.
	var stsNames []string
	for h := range testPolicies {
		stsNames = append(stsNames, h)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.Host)
		p, ok := testPolicies[host]
		if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", p.ctype)
		w.Write([]byte(p.body))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{*valid(stsNames...)}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	e.stsPort, _ = strconv.Atoi(port)

	z := e.zone
	a := func(names ...string) {
		for _, n := range names {
			z.add(t, n+". 300 IN A 127.0.0.1")
		}
	}
	// DANE, signed.
	z.sign("dane.example")
	z.add(t, "dane.example. 300 IN MX 10 mx1.dane.example.", "dane.example. 300 IN MX 20 mx2.dane.example.",
		"_25._tcp.mx1.dane.example. 300 IN TLSA 3 1 1 "+e.good, "_25._tcp.mx2.dane.example. 300 IN TLSA 3 1 1 "+e.good)
	a("mx1.dane.example", "mx2.dane.example")
	z.sign("danebad.example")
	z.add(t, "danebad.example. 300 IN MX 10 mx1.danebad.example.",
		"_25._tcp.mx1.danebad.example. 300 IN TLSA 3 1 1 "+strings.Repeat("ab", 32))
	a("mx1.danebad.example")
	z.add(t, "daneunsigned.example. 300 IN MX 10 mx1.daneunsigned.example.",
		"_25._tcp.mx1.daneunsigned.example. 300 IN TLSA 3 1 1 "+e.good)
	a("mx1.daneunsigned.example")
	z.sign("danepart.example")
	z.add(t, "danepart.example. 300 IN MX 10 mx1.danepart.example.", "danepart.example. 300 IN MX 20 mx2.danepart.example.",
		"_25._tcp.mx1.danepart.example. 300 IN TLSA 3 1 1 "+e.good)
	a("mx1.danepart.example", "mx2.danepart.example")
	// MTA-STS.
	z.add(t, "sts.example. 300 IN MX 10 mx1.sts.example.", "sts.example. 300 IN MX 20 mail.other.example.",
		`_mta-sts.sts.example. 300 IN TXT "v=STSv1; id=20260101T000000;"`,
		`_mta-sts.sts.example. 300 IN TXT "some unrelated record"`,
		`_smtp._tls.sts.example. 300 IN TXT "v=TLSRPTv1;" " rua=mailto:tlsrpt@sts.example"`)
	z.truncate["_smtp._tls.sts.example."] = true // only TCP gets the answer
	a("mx1.sts.example", "mail.other.example", "mta-sts.sts.example")
	for _, d := range []string{"stsmismatch", "testing", "badpolicy"} {
		z.add(t, d+".example. 300 IN MX 10 mx1."+d+".example.",
			`_mta-sts.`+d+`.example. 300 IN TXT "v=STSv1; id=1;"`)
		a("mx1."+d+".example", "mta-sts."+d+".example")
	}
	// PKIX only.
	z.add(t, "verify.example. 300 IN MX 10 mx1.verify.example.")
	a("mx1.verify.example")
	z.add(t, "encrypt.example. 300 IN MX 10 mx1.encrypt.example.", "encrypt.example. 300 IN MX 20 mx2.encrypt.example.",
		"encrypt.example. 300 IN MX 30 mx3.encrypt.example.", "encrypt.example. 300 IN MX 40 mx4.encrypt.example.")
	a("mx1.encrypt.example", "mx2.encrypt.example", "mx3.encrypt.example", "mx4.encrypt.example")
	z.add(t, "may.example. 300 IN MX 10 mx1.may.example.", "may.example. 300 IN MX 20 mx2.may.example.")
	a("mx1.may.example", "mx2.may.example")
	z.add(t, "closes.example. 300 IN MX 10 mx1.closes.example.")
	a("mx1.closes.example")
	z.add(t, "blackhole.example. 300 IN MX 10 mx1.blackhole.example.")
	a("mx1.blackhole.example")
	z.add(t, "null.example. 300 IN MX 0 .")
	a("implicit.example")
	z.add(t, "servfail.example. 300 IN A 127.0.0.1")
	z.servfail["servfail.example."] = true

	e.dns = startDNS(t, z)
	return e
}

func (e *testEnv) checker(timeout time.Duration) *Checker {
	return &Checker{
		Resolver:   &Resolver{Servers: []string{e.dns}},
		Timeout:    timeout,
		Port:       2525,
		HELO:       "probe.mailtls.test",
		DialSMTP:   e.router.dial,
		RootCAs:    e.ca.pool,
		MTASTSPort: e.stsPort,
		// Every test server is on 127.0.0.1.
		AllowPrivate: true,
		Now:          func() time.Time { return testNow },
	}
}

func (e *testEnv) check(domain string, timeout time.Duration) *Report {
	e.t.Helper()
	r, err := e.checker(timeout).Check(context.Background(), domain)
	if err != nil {
		e.t.Fatalf("Check(%s): %v", domain, err)
	}
	// The policy value must be something Postfix accepts unchanged.
	if p := r.Recommendation.Policy; p != "" {
		pp, err := policyd.ParsePolicy(p)
		if err != nil {
			e.t.Errorf("%s: recommended policy %q is invalid: %v", domain, p, err)
		} else if pp.String() != p || pp.Level != r.Recommendation.Level {
			e.t.Errorf("%s: recommended policy %q normalises to %q (level %q)", domain, p, pp.String(), pp.Level)
		}
	}
	if len(r.Recommendation.Reasons) == 0 {
		e.t.Errorf("%s: recommendation without reasons", domain)
	}
	return r
}

func hasReason(r *Report, substr string) bool {
	for _, s := range r.Recommendation.Reasons {
		if strings.Contains(s, substr) {
			return true
		}
	}
	return false
}

func TestCheckRecommendations(t *testing.T) {
	e := newTestEnv(t)
	tests := []struct {
		domain, level, policy string
		reasons               []string // substrings that must appear in some reason
	}{
		{"dane.example", "dane-only", "dane-only", []string{"DNSSEC-validated TLSA"}},
		{"danebad.example", "verify", "verify", []string{"mx1.danebad.example certificate matches none of its TLSA records"}},
		{"daneunsigned.example", "verify", "verify", []string{"not DNSSEC-validated"}},
		{"danepart.example", "dane", "dane", []string{"mx2.danepart.example does not offer STARTTLS: encrypt would defer mail routed to it", "mx2.danepart.example has no TLSA records"}},
		{"sts.example", "secure", "secure match=.sts.example:mail.other.example", []string{"MTA-STS policy (mode enforce)"}},
		{"stsmismatch.example", "verify", "verify", []string{"mx1.stsmismatch.example is not covered by the MTA-STS mx patterns (mx9.elsewhere.example)"}},
		{"testing.example", "verify", "verify", []string{"mode is testing"}},
		{"badpolicy.example", "verify", "verify", []string{"MTA-STS policy is unusable", "mode \"enforced\""}},
		{"verify.example", "verify", "verify", []string{"validates and names the MX host", "publishes no MTA-STS record"}},
		{"encrypt.example", "encrypt", "encrypt", []string{
			"mx2.encrypt.example certificate does not validate (self-signed certificate)",
			"mx3.encrypt.example certificate does not validate (certificate expired on 2026-05-01",
			"mx4.encrypt.example certificate is not valid for mx4.encrypt.example (it names unrelated.example)",
		}},
		{"may.example", "may", "may", []string{"mx2.may.example does not offer STARTTLS: encrypt would defer mail routed to it"}},
		{"closes.example", "may", "may", []string{"mx1.closes.example could not be probed (ehlo: EHLO: connection closed by the server)"}},
		{"implicit.example", "verify", "verify", nil},
		{"null.example", "", "", []string{"null MX (RFC 7505)"}},
		{"nxdomain.example", "", "", []string{"does not exist (NXDOMAIN)"}},
		{"servfail.example", "", "", []string{"SERVFAIL"}},
	}
	for _, tc := range tests {
		t.Run(tc.domain, func(t *testing.T) {
			t.Parallel()
			r := e.check(tc.domain, 10*time.Second)
			rec := r.Recommendation
			if rec.Level != tc.level || rec.Policy != tc.policy {
				t.Errorf("got level %q policy %q, want %q %q; reasons:\n  %s", rec.Level, rec.Policy, tc.level, tc.policy,
					strings.Join(rec.Reasons, "\n  "))
			}
			for _, want := range tc.reasons {
				if !hasReason(r, want) {
					t.Errorf("no reason contains %q; reasons:\n  %s", want, strings.Join(rec.Reasons, "\n  "))
				}
			}
		})
	}
}

func TestCheckDetails(t *testing.T) {
	e := newTestEnv(t)

	t.Run("dane", func(t *testing.T) {
		r := e.check("DANE.example.", 10*time.Second)
		if r.Domain != "dane.example" || !r.MXDNSSEC || len(r.MX) != 2 {
			t.Fatalf("domain %q mx_dnssec %v, %d MX", r.Domain, r.MXDNSSEC, len(r.MX))
		}
		if r.MX[0].Host != "mx1.dane.example" || r.MX[0].Preference != 10 || r.MX[1].Host != "mx2.dane.example" {
			t.Errorf("MX order: %+v", r.MX)
		}
		for _, m := range r.MX {
			if !m.AddressesDNSSEC || !m.TLSADNSSEC || !m.DANEMatch || len(m.TLSA) != 1 || !m.TLSA[0].Usable || !m.TLSA[0].Matches {
				t.Errorf("%s: %+v", m.Host, m)
			}
			if m.TLSA[0].Data != e.good {
				t.Errorf("%s TLSA data %s, want %s", m.Host, m.TLSA[0].Data, e.good)
			}
			p := m.Probe
			if p.Address != "127.0.0.1:"+smtpPort || !p.STARTTLS || p.TLS == nil || p.Banner != "mx.test ESMTP" {
				t.Fatalf("%s probe: %+v", m.Host, p)
			}
			if p.TLS.Version != "TLS 1.3" || p.TLS.CipherSuite == "" || !p.TLS.ChainVerified || !p.TLS.NameMatch || p.TLS.Expired || p.TLS.SelfSigned {
				t.Errorf("%s TLS: %+v", m.Host, p.TLS)
			}
		}
		if r.MTASTS != nil || r.TLSRPT != nil {
			t.Errorf("MTA-STS %+v TLSRPT %+v, want none", r.MTASTS, r.TLSRPT)
		}
	})

	t.Run("sts and truncated TLSRPT over TCP", func(t *testing.T) {
		r := e.check("sts.example", 10*time.Second)
		m := r.MTASTS
		if !m.Usable() || m.ID != "20260101T000000" || m.Policy.Mode != mtasts.ModeEnforce || m.Policy.MaxAge != 86400 {
			t.Fatalf("MTA-STS: %+v", m)
		}
		if want := "https://mta-sts.sts.example:" + strconv.Itoa(e.stsPort) + "/.well-known/mta-sts.txt"; m.PolicyURL != want {
			t.Errorf("policy URL %s, want %s", m.PolicyURL, want)
		}
		for _, mx := range r.MX {
			if mx.MTASTSMatch == nil || !*mx.MTASTSMatch {
				t.Errorf("%s: mta_sts_match %v", mx.Host, mx.MTASTSMatch)
			}
		}
		if r.TLSRPT == nil || r.TLSRPT.Error != "" || len(r.TLSRPT.RUA) != 1 || r.TLSRPT.RUA[0] != "mailto:tlsrpt@sts.example" {
			t.Errorf("TLSRPT: %+v", r.TLSRPT)
		}
		if e.zone.count("_smtp._tls.sts.example", dns.TypeTXT, "tcp") == 0 {
			t.Error("truncated UDP answer was not retried over TCP")
		}
		if r.MXDNSSEC || r.MX[0].AddressesDNSSEC {
			t.Error("unsigned zone reported as DNSSEC-validated")
		}
	})

	t.Run("implicit MX", func(t *testing.T) {
		r := e.check("implicit.example", 10*time.Second)
		if !r.ImplicitMX || len(r.MX) != 1 || r.MX[0].Host != "implicit.example" || r.MX[0].Probe.TLS == nil {
			t.Errorf("implicit MX: %+v", r)
		}
	})

	t.Run("null MX", func(t *testing.T) {
		r := e.check("null.example", 10*time.Second)
		if !r.NullMX || len(r.MX) != 0 {
			t.Errorf("null MX: %+v", r)
		}
		if e.zone.count("null.example", dns.TypeA, "udp") != 0 {
			t.Error("looked up addresses of a null-MX domain")
		}
	})

	t.Run("no STARTTLS", func(t *testing.T) {
		r := e.check("may.example", 10*time.Second)
		p := r.MX[1].Probe
		if !p.Connected || p.STARTTLS || p.TLS != nil || p.Error != "" || len(p.Extensions) == 0 {
			t.Errorf("plain server probe: %+v", p)
		}
	})

	t.Run("json", func(t *testing.T) {
		r := e.check("sts.example", 10*time.Second)
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Recommendation struct {
				Level, Policy string
				Reasons       []string
			} `json:"recommendation"`
			MX []struct {
				Host  string `json:"host"`
				Probe struct {
					STARTTLS bool `json:"starttls"`
					TLS      struct {
						Version string `json:"version"`
					} `json:"tls"`
				} `json:"probe"`
			} `json:"mx"`
			MTASTS struct {
				Policy struct {
					MX []string `json:"mx"`
				} `json:"policy"`
			} `json:"mta_sts"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got.Recommendation.Policy != "secure match=.sts.example:mail.other.example" || len(got.MX) != 2 ||
			!got.MX[0].Probe.STARTTLS || got.MX[0].Probe.TLS.Version == "" || len(got.MTASTS.Policy.MX) != 2 {
			t.Errorf("JSON: %s", b)
		}
	})
}

// A server that accepts and never answers must not hold the check past
// its timeout, and the report must say what happened.
func TestCheckBlackHole(t *testing.T) {
	e := newTestEnv(t)
	const timeout = 2 * time.Second
	start := time.Now()
	r := e.check("blackhole.example", timeout)
	if el := time.Since(start); el >= timeout {
		t.Errorf("check took %s, timeout %s", el, timeout)
	}
	p := r.MX[0].Probe
	want := "no SMTP greeting within " + TimeoutsFor(timeout).Greeting.String()
	if p.FailedStep != StepGreeting || !strings.Contains(p.Error, want) || !strings.Contains(p.Error, "black hole") {
		t.Errorf("probe: step %q error %q, want %q", p.FailedStep, p.Error, want)
	}
	if r.Recommendation.Level != "may" || !hasReason(r, "could not be probed") {
		t.Errorf("recommendation %+v", r.Recommendation)
	}
}

// With the overall timeout shorter than the step timeouts, the overall
// one wins and is named.
func TestCheckOverallTimeout(t *testing.T) {
	e := newTestEnv(t)
	c := e.checker(time.Second)
	c.Timeouts.Greeting = time.Minute
	start := time.Now()
	r, err := c.Check(context.Background(), "blackhole.example")
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Errorf("check took %s with a 1s timeout", el)
	}
	if p := r.MX[0].Probe; p.FailedStep != StepGreeting || !strings.Contains(p.Error, "overall check timeout") {
		t.Errorf("probe: %+v", p)
	}
}

func TestCheckBadInput(t *testing.T) {
	e := newTestEnv(t)
	for _, d := range []string{"", "exa mple.com", "-bad.example", "a..b", strings.Repeat("a", 64) + ".example"} {
		if _, err := e.checker(time.Second).Check(context.Background(), d); err == nil {
			t.Errorf("Check(%q) accepted", d)
		}
	}
	c := e.checker(time.Second)
	c.HELO = "bad name"
	if _, err := c.Check(context.Background(), "verify.example"); err == nil {
		t.Error("HELO with a space accepted")
	}
	c = e.checker(time.Second)
	c.Resolver = nil
	if _, err := c.Check(context.Background(), "verify.example"); err == nil {
		t.Error("no resolver accepted")
	}
	if d, err := NormalizeDomain("Bücher.Example."); err != nil || d != "xn--bcher-kva.example" {
		t.Errorf("NormalizeDomain IDN = %q, %v", d, err)
	}
}

func TestNewResolver(t *testing.T) {
	r, err := NewResolver("192.0.2.1", "")
	if err != nil || r.Servers[0] != "192.0.2.1:53" {
		t.Errorf("bare IP: %v %v", r, err)
	}
	r, err = NewResolver("[2001:db8::1]:5353", "")
	if err != nil || r.Servers[0] != "[2001:db8::1]:5353" {
		t.Errorf("IPv6: %v %v", r, err)
	}
	if _, err := NewResolver("not an address", ""); err == nil {
		t.Error("bad address accepted")
	}
	dir := t.TempDir()
	r, err = NewResolver("", dir+"/missing")
	if err != nil || r.Servers[0] != FallbackResolver || !strings.Contains(r.Note, "missing is unusable") {
		t.Errorf("missing resolv.conf: %+v, %v", r, err)
	}
	conf := dir + "/resolv.conf"
	writeFile(t, conf, "# nothing\n")
	r, err = NewResolver("", conf)
	if err != nil || r.Servers[0] != FallbackResolver || !strings.Contains(r.Note, "no nameserver") {
		t.Errorf("resolv.conf without nameserver: %+v, %v", r, err)
	}
	writeFile(t, conf, "nameserver 192.0.2.53\nnameserver 2001:db8::53\noptions timeout:3\n")
	r, err = NewResolver("", conf)
	if err != nil || len(r.Servers) != 2 || r.Servers[1] != "[2001:db8::53]:53" || r.Timeout != 3*time.Second {
		t.Errorf("resolv.conf: %+v %v", r, err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
