package published

import (
	"context"
	"reflect"
	"slices"
	"testing"

	"github.com/mailtls/mailtls/tlsrpt"
)

// TestTLSRPTPolicy: the stored cache entry gives the RFC 8460 policy, and
// a failed fetch its result type: an HTTP error (sts-policy-fetch-error),
// a policy that does not parse (sts-policy-invalid), a certificate that
// does not name the policy host (sts-webpki-invalid).
func TestTLSRPTPolicy(t *testing.T) {
	e := newEnv(t)
	for _, d := range []string{"sts", "testing", "fail", "none", "nocert"} {
		dom := d + ".example"
		e.zone.Add(t, dom+". 300 IN MX 10 mx1."+dom+".", "mx1."+dom+". 300 IN A 127.0.0.1")
		e.sts(dom, "1")
	}
	e.policy("sts.example", "version: STSv1\nmode: enforce\nmx: *.sts.example\nmax_age: 86400\n")
	e.policy("testing.example", "version: STSv1\nmode: testing\nmx: mx1.testing.example\nmax_age: 604800\n")
	e.policy("none.example", "version: STSv1\nmode: bogus\nmax_age: 86400\n")
	e.policy("nocert.example", "version: STSv1\nmode: enforce\nmx: mx1.nocert.example\nmax_age: 86400\n")
	e.setStatus("fail.example", 500)
	ms := &MemStore{}
	r := e.resolver(func(c *Config) { c.Store = ms })
	for _, d := range []string{"sts.example", "testing.example", "fail.example", "none.example", "nocert.example", "plain.example"} {
		resolve(t, r, d)
	}
	r.Close()

	got := map[string]tlsrpt.Policy{}
	fails := map[string]tlsrpt.ResultType{}
	err := ms.LoadPublished(context.Background(), func(d string, data []byte) error {
		p, f, err := TLSRPTPolicy(d, data)
		if err != nil {
			t.Errorf("%s: %v", d, err)
		}
		got[d] = p
		if f != nil {
			fails[d] = f.ResultType
			if !f.Time.Equal(e.clock.Now()) || f.Error == "" {
				t.Errorf("%s: fetch failure %+v", d, f)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := got["sts.example"]; p.Type != tlsrpt.PolicySTS || p.Domain != "sts.example" ||
		!slices.Equal(p.String, []string{"version: STSv1", "mode: enforce", "mx: *.sts.example", "max_age: 86400"}) ||
		!slices.Equal(p.MXHost, []string{"*.sts.example"}) {
		t.Errorf("sts.example: %+v", p)
	}
	if p := got["testing.example"]; p.Type != tlsrpt.PolicySTS || !slices.Contains(p.String, "mode: testing") {
		t.Errorf("testing.example: %+v", p)
	}
	for _, d := range []string{"fail.example", "none.example", "nocert.example", "plain.example"} {
		if p := got[d]; p.Type != tlsrpt.PolicyNoPolicyFound || p.String != nil {
			t.Errorf("%s: %+v, want no-policy-found", d, p)
		}
	}
	want := map[string]tlsrpt.ResultType{"fail.example": tlsrpt.STSPolicyFetchError, "none.example": tlsrpt.STSPolicyInvalid,
		"nocert.example": tlsrpt.STSWebPKIInvalid}
	if len(fails) != len(want) {
		t.Errorf("fetch failures %v, want %v", fails, want)
	}
	for d, rt := range want {
		if fails[d] != rt {
			t.Errorf("%s: fetch failure %q, want %q", d, fails[d], rt)
		}
	}
}

// TestAnswerPolicy: the answer cached now gives the cached policy, with
// its lines; an earlier answer what the answer log holds of it.
func TestAnswerPolicy(t *testing.T) {
	data := []byte(`{"v":1,"result":{"source":"mta-sts","policy":"secure match=.b.example:mx.b.example servername=hostname","resolved_at":"2026-01-01T00:00:00Z","evidence":{}},` +
		`"policy":{"id":"2","text":"version: STSv1\r\nmode: enforce\r\nmx: *.b.example\r\nmx: mx.b.example\r\nmax_age: 86400\r\n","fetched":"2026-01-01T00:00:00Z","expires":"2099-01-01T00:00:00Z"}}`)
	now := tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: "b.example", MXHost: []string{"*.b.example", "mx.b.example"},
		String: []string{"version: STSv1", "mode: enforce", "mx: *.b.example", "mx: mx.b.example", "max_age: 86400"}}
	for _, tc := range []struct {
		source, answer, id string
		cached             []byte
		want               tlsrpt.Policy
	}{
		{"mta-sts", "secure match=.b.example:mx.b.example servername=hostname", "2", data, now},
		// the same, spelled otherwise: Postfix's answer is compared parsed
		{"mta-sts", "secure  match=.b.example:mx.b.example servername=hostname", "2", data, now},
		// an earlier policy: its id differs
		{"mta-sts", "secure match=.old.example servername=hostname", "1", data,
			tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: "b.example", MXHost: []string{"*.old.example"}}},
		{"mta-sts", "secure match=.b.example:mx.b.example servername=hostname", "1", nil,
			tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: "b.example", MXHost: []string{"*.b.example", "mx.b.example"}}},
		// a testing policy: source none with a policy id, no answer
		{"none", "", "7", data, tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: "b.example"}},
		{"dane", "dane-only", "", data, tlsrpt.Policy{Type: tlsrpt.PolicyTLSA, Domain: "b.example"}},
		{"none", "", "", data, tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, Domain: "b.example"}},
		{"mta-sts", "secure match=x servername=hostname", "2", []byte("not json"),
			tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: "b.example", MXHost: []string{"x"}}},
	} {
		got := AnswerPolicy("b.example", tc.source, tc.answer, tc.id, tc.cached)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("AnswerPolicy(%q, %q, %q) = %+v, want %+v", tc.source, tc.answer, tc.id, got, tc.want)
		}
	}
}
