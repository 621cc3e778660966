package published

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestTLSRPTAttributes: MTA-STS enforce and DANE answers carry their
// TLSRPT attributes (RFC 8460 §4.4), testing and no policy none; a policy
// whose lines cannot reach Postfix safely gives none, with a note; a
// stored entry's attributes are derived again, never read back.
func TestTLSRPTAttributes(t *testing.T) {
	e := newEnv(t)
	z := e.zone
	for _, d := range []string{"sts", "testing", "idle"} {
		dom := d + ".example"
		z.Add(t, dom+". 300 IN MX 10 mx1."+dom+".", "mx1."+dom+". 300 IN A 127.0.0.1")
		e.sts(dom, "20260101")
	}
	e.policy("sts.example", "version: STSv1\r\nmode: enforce\r\nmx: *.sts.example\r\nmx: backup.example.net\r\nmax_age: 86400\r\n")
	e.policy("testing.example", "version: STSv1\nmode: testing\nmx: mx1.testing.example\nmax_age: 604800\n")
	e.policy("idle.example", "version: STSv1\nmode: enforce\nmx: mx1.idle.example\nmax_age: 86400\nx-ext: a,b\n")
	z.Sign("dane.example")
	z.Add(t, "dane.example. 300 IN MX 10 mx1.dane.example.", "dane.example. 300 IN MX 20 mx2.dane.example.",
		"mx1.dane.example. 300 IN A 127.0.0.1", "mx2.dane.example. 300 IN A 127.0.0.1",
		"_25._tcp.mx1.dane.example. 300 IN TLSA "+tlsaData, "_25._tcp.mx2.dane.example. 300 IN TLSA "+tlsaData,
		"_25._tcp.mx2.dane.example. 300 IN TLSA 2 0 1 "+strings.Repeat("ab", 32))
	r := e.resolver(nil)

	res := resolve(t, r, "sts.example")
	wantAnswer(t, res, SourceMTASTS, "secure match=.sts.example:backup.example.net servername=hostname")
	if want := "policy_type=sts policy_domain=sts.example mx_host_pattern=*.sts.example mx_host_pattern=backup.example.net" +
		" { policy_string = version: STSv1 } { policy_string = mode: enforce } { policy_string = mx: *.sts.example }" +
		" { policy_string = mx: backup.example.net } { policy_string = max_age: 86400 }"; res.TLSRPT != want {
		t.Errorf("sts.example TLSRPT:\n got %q\nwant %q", res.TLSRPT, want)
	}
	res = resolve(t, r, "dane.example")
	wantAnswer(t, res, SourceDANE, "dane-only")
	if res.TLSRPT != "" { // Postfix builds a DANE report's policy itself
		t.Errorf("dane.example TLSRPT %q, want none", res.TLSRPT)
	}
	if res := resolve(t, r, "testing.example"); res.TLSRPT != "" {
		t.Errorf("testing.example TLSRPT %q, want none", res.TLSRPT)
	}
	res = resolve(t, r, "idle.example")
	wantAnswer(t, res, SourceMTASTS, "secure match=mx1.idle.example servername=hostname")
	if res.TLSRPT != "" || !hasNote(res, "no TLSRPT attributes") {
		t.Errorf("idle.example: TLSRPT %q, notes %q", res.TLSRPT, res.Evidence.Notes)
	}

	// A stored entry whose attributes were tampered with.
	st, _ := r.state("sts.example")
	s := stored{V: 1, Result: st.result, RefreshAt: st.refreshAt,
		Policy: &storedPolicy{ID: st.policy.id, Text: st.policy.p.String(), Fetched: st.policy.fetched, Expires: st.policy.expires}}
	s.Result.TLSRPT = "policy_type=sts, smuggled"
	data, _ := json.Marshal(s)
	got, err := decodeState("sts.example", data, nil)
	if err != nil || got.result.TLSRPT != st.result.TLSRPT {
		t.Errorf("decoded TLSRPT %q (%v), want %q", got.result.TLSRPT, err, st.result.TLSRPT)
	}
}
