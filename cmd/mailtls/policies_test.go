package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/published"
	"github.com/mailtls/mailtls/store"
)

// policyLog writes real Postfix smtp(8) lines (the formats of
// logparse/testdata/real-postfix37.log and postfix311.log) with any relay.
type policyLog struct {
	b   strings.Builder
	pid int
}

func (p *policyLog) line(at time.Time, pid int, msg string) {
	fmt.Fprintf(&p.b, "%s mx1 postfix/smtp[%d]: %s\n", at.UTC().Format("2006-01-02T15:04:05.000000+00:00"), pid, msg)
}

// sent logs one delivery to domain through host; trust "" means plaintext;
// feature is Postfix 3.11's tls= value, or "".
func (p *policyLog) sent(at time.Time, domain, host, trust, feature string) {
	p.pid++
	relay := fmt.Sprintf("%s[192.0.2.%d]:25", host, 10+len(host)%200)
	if trust != "" {
		p.line(at, p.pid, trust+" TLS connection established to "+relay+": TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)")
	}
	f := ""
	if feature != "" {
		f = "tls=" + feature + ", "
	}
	p.line(at.Add(time.Second), p.pid, fmt.Sprintf("%010X: to=<u%d@%s>, relay=%s, delay=1.2, delays=0.1/0/0.6/0.5, %sdsn=2.0.0, status=sent (250 2.0.0 Ok: queued)",
		0x1000+p.pid, p.pid, domain, relay, f))
}

// notVerified logs a deferral for a failed certificate verification, as
// Postfix does at a mandatory level.
func (p *policyLog) notVerified(at time.Time, domain, host string) {
	p.pid++
	relay := fmt.Sprintf("%s[192.0.2.%d]:25", host, 10+len(host)%200)
	p.line(at, p.pid, "server certificate verification failed for "+relay+": num=62:hostname mismatch")
	p.line(at, p.pid, "Untrusted TLS connection established to "+relay+": TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)")
	p.line(at.Add(time.Second), p.pid, fmt.Sprintf("%010X: to=<u%d@%s>, relay=%s, delay=0.02, delays=0/0/0.02/0, dsn=4.7.5, status=deferred (Server certificate not verified)",
		0x1000+p.pid, p.pid, domain, relay))
}

// cacheEntry is a published cache entry as the resolver persists it.
func cacheEntry(t *testing.T, res published.Result) []byte {
	t.Helper()
	data, err := json.Marshal(map[string]any{"v": 1, "result": res, "refresh_at": res.ResolvedAt.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := published.Decode(res.Domain, data); err != nil {
		t.Fatalf("fixture entry of %s does not decode: %v", res.Domain, err)
	}
	return data
}

// savePublished writes a published cache entry and its answer log row
// through the store API, as resolved at at.
func savePublished(t *testing.T, c *cliT, at time.Time, res published.Result, id string) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, c.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	res.ResolvedAt = at
	if err := st.SavePublishedAnswer(ctx, res.Domain, string(res.Source), res.Policy, id, cacheEntry(t, res), at, at.Add(30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
}

type policyFixture struct {
	c  *cliT
	t0 time.Time
}

// newPolicyFixture imports a history and fills the published cache and
// answer log through the store API:
//
//   - outlook.example publishes enforce (mx *.outlook.example) since t0-6d:
//     5 verified deliveries to mx1, 3 untrusted to mx2, 1 to a relay
//     matching no pattern, 1 plaintext to mx1, 1 verified to mx1 logged
//     with tls=may (Postfix applied may); and one untrusted delivery 10
//     days ago, outside the window;
//   - testing.example publishes testing: 2 verified, 2 anonymous;
//   - dane.example has DANE (dane-only) since t0-6d: 2 verified sent, 1
//     deferred for a failed verification;
//   - flip.example had an enforce answer from t0-5d to t0-3d: one
//     delivery then, one after;
//   - override.example gets an encrypt override at t0: 1 delivery before,
//     2 after;
//   - both.example publishes enforce since t0-6d and gets an encrypt
//     override at t0: 1 delivery before, 1 after (the override wins).
func newPolicyFixture(t *testing.T) policyFixture {
	t.Helper()
	c := newCLI(t)
	t0 := time.Now().UTC().Truncate(time.Second)
	day := func(n float64) time.Time { return t0.Add(time.Duration(n * float64(24*time.Hour))) }
	var p policyLog
	p.sent(day(-10), "outlook.example", "mx2.outlook.example", "Untrusted", "")
	p.sent(day(-4.5), "flip.example", "mx.flip.example", "Verified", "")
	for i := 0; i < 5; i++ {
		p.sent(day(-2).Add(time.Duration(i)*time.Minute), "outlook.example", "mx1.outlook.example", "Verified", "")
	}
	for i := 0; i < 3; i++ {
		p.sent(day(-2).Add(time.Duration(10+i)*time.Minute), "outlook.example", "mx2.outlook.example", "Untrusted", "")
	}
	p.sent(day(-2).Add(20*time.Minute), "outlook.example", "mx9.other.example", "Trusted", "")
	p.sent(day(-2).Add(21*time.Minute), "outlook.example", "mx1.outlook.example", "", "")
	p.sent(day(-2).Add(22*time.Minute), "outlook.example", "mx1.outlook.example", "Verified", "may")
	p.sent(day(-2).Add(30*time.Minute), "flip.example", "mx.flip.example", "Verified", "")
	for i := 0; i < 2; i++ {
		p.sent(day(-1).Add(time.Duration(i)*time.Minute), "testing.example", "mx.testing.example", "Verified", "")
		p.sent(day(-1).Add(time.Duration(5+i)*time.Minute), "testing.example", "mx.testing.example", "Anonymous", "")
		p.sent(day(-1).Add(time.Duration(10+i)*time.Minute), "dane.example", "mx.dane.example", "Verified", "")
	}
	p.notVerified(day(-1).Add(20*time.Minute), "dane.example", "mx.dane.example")
	p.sent(t0.Add(-time.Hour), "override.example", "mx.override.example", "Trusted", "")
	p.sent(t0.Add(-time.Hour), "both.example", "mx.both.example", "Verified", "")
	c.ok("policy", "set", "override.example", "encrypt")
	c.ok("policy", "set", "both.example", "encrypt")
	p.sent(t0.Add(time.Minute), "both.example", "mx.both.example", "Verified", "")
	p.sent(t0.Add(2*time.Minute), "override.example", "mx.override.example", "Trusted", "")
	p.sent(t0.Add(3*time.Minute), "override.example", "mx.override.example", "Trusted", "")
	f := filepath.Join(t.TempDir(), "policies.log")
	if err := os.WriteFile(f, []byte(p.b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok("import", "--quiet", f)

	ctx := context.Background()
	st, err := store.Open(ctx, c.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	save := func(at time.Time, res published.Result, id string) {
		t.Helper()
		res.ResolvedAt = at
		if err := st.SavePublishedAnswer(ctx, res.Domain, string(res.Source), res.Policy, id, cacheEntry(t, res), at, t0.Add(24*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	enforce := "secure match=.outlook.example servername=hostname"
	save(day(-6), published.Result{Domain: "outlook.example", Source: published.SourceMTASTS, Policy: enforce, Evidence: published.Evidence{
		MTASTS: &published.STSEvidence{ID: "20260101", Mode: "enforce", MX: []string{"*.outlook.example"}, MaxAge: 604800, Answer: enforce}}}, "20260101")
	save(day(-6), published.Result{Domain: "testing.example", Source: published.SourceNone, Evidence: published.Evidence{
		MTASTS: &published.STSEvidence{ID: "t1", Mode: "testing", MX: []string{"mx.testing.example"}, MaxAge: 86400,
			Answer: "secure match=mx.testing.example servername=hostname"}}}, "t1")
	save(day(-6), published.Result{Domain: "dane.example", Source: published.SourceDANE, Policy: "dane-only", Evidence: published.Evidence{
		MX: []published.MXEvidence{{Host: "mx.dane.example", Authenticated: true, Usable: true, TLSA: []string{"3 1 1 00"}}}, ADTrusted: true}}, "")
	both := "secure match=mx.both.example servername=hostname"
	save(day(-6), published.Result{Domain: "both.example", Source: published.SourceMTASTS, Policy: both, Evidence: published.Evidence{
		MTASTS: &published.STSEvidence{ID: "b1", Mode: "enforce", MX: []string{"mx.both.example"}, MaxAge: 86400, Answer: both}}}, "b1")
	flip := "secure match=mx.flip.example servername=hostname"
	save(day(-5), published.Result{Domain: "flip.example", Source: published.SourceMTASTS, Policy: flip, Evidence: published.Evidence{
		MTASTS: &published.STSEvidence{ID: "f1", Mode: "enforce", MX: []string{"mx.flip.example"}, MaxAge: 86400, Answer: flip}}}, "f1")
	save(day(-3), published.Result{Domain: "flip.example", Source: published.SourceNone}, "")
	return policyFixture{c: c, t0: t0}
}

func TestReportByPolicy(t *testing.T) {
	fx := newPolicyFixture(t)
	var out struct {
		Rows []struct {
			Key        string `json:"key"`
			Deliveries int64  `json:"deliveries"`
			Encrypted  int64  `json:"encrypted"`
			Plaintext  int64  `json:"plaintext"`
		} `json:"rows"`
	}
	until := fx.t0.Add(time.Hour).Format(time.RFC3339)
	if err := json.Unmarshal([]byte(fx.c.ok("report", "--by", "policy", "--since", "7d", "--until", until, "--format", "json")), &out); err != nil {
		t.Fatal(err)
	}
	got := map[string][3]int64{}
	for _, r := range out.Rows {
		got[r.Key] = [3]int64{r.Deliveries, r.Encrypted, r.Plaintext}
	}
	want := map[string][3]int64{
		"override": {3, 3, 0},   // override.example and both.example after the overrides were set
		"mta-sts":  {12, 11, 1}, // outlook.example (not the tls=may one), flip.example while enforce, both.example before t0
		"dane":     {2, 2, 0},
		// override.example before the override, outlook's tls=may
		// delivery, testing.example, flip.example after the change
		"default": {1 + 1 + 4 + 1, 7, 0},
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("report --by policy %s = %v, want %v (all rows %v)", k, got[k], w, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("rows %v, want keys of %v", got, want)
	}
}

func TestReportPolicies(t *testing.T) {
	fx := newPolicyFixture(t)
	var ps struct {
		Rows []struct {
			Domain     string `json:"domain"`
			Mode       string `json:"mode"`
			Deliveries int64  `json:"deliveries"`
			WouldFail  int64  `json:"would_fail"`
			Problems   []struct {
				MX     string `json:"mx"`
				Reason string `json:"reason"`
				Count  int64  `json:"count"`
			} `json:"problems"`
		} `json:"rows"`
		Warnings []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(fx.c.ok("report", "policies", "--format", "json")), &ps); err != nil {
		t.Fatal(err)
	}
	type prob struct {
		mx, reason string
		n          int64
	}
	want := map[string]struct {
		mode          string
		checked, fail int64
		probs         []prob
	}{
		"outlook.example": {"enforce", 11, 5, []prob{{"mx2.outlook.example", "untrusted", 3}, {"mx1.outlook.example", "plaintext", 1}, {"mx9.other.example", "mx-mismatch", 1}}},
		"testing.example": {"testing", 4, 2, []prob{{"mx.testing.example", "anonymous", 2}}},
		"dane.example":    {"dane", 3, 1, []prob{{"mx.dane.example", "tlsa-mismatch", 1}}},
		"both.example":    {"enforce", 1, 0, nil}, // the delivery after now is outside the window
	}
	if len(ps.Rows) != len(want) {
		t.Errorf("rows %+v, want the domains of %v (flip.example has no policy now)", ps.Rows, want)
	}
	for _, r := range ps.Rows {
		w, ok := want[r.Domain]
		if !ok {
			t.Errorf("unexpected row %+v", r)
			continue
		}
		var got []prob
		for _, p := range r.Problems {
			got = append(got, prob{p.MX, p.Reason, p.Count})
		}
		if r.Mode != w.mode || r.Deliveries != w.checked || r.WouldFail != w.fail || fmt.Sprint(got) != fmt.Sprint(w.probs) {
			t.Errorf("%s: mode %s, %d of %d would fail, problems %v; want %s, %d of %d, %v",
				r.Domain, r.Mode, r.WouldFail, r.Deliveries, got, w.mode, w.fail, w.checked, w.probs)
		}
	}
	const example = "outlook.example publishes MTA-STS enforce, but mx2.outlook.example presented an untrusted certificate in 3 of 11 deliveries: mail routed there will be deferred"
	if len(ps.Warnings) != 4 || ps.Warnings[1] != example {
		t.Errorf("warnings %q: want 4 (enforce and DANE only, in domain order), the second %q", ps.Warnings, example)
	}
	for _, w := range ps.Warnings {
		if strings.Contains(w, "testing.example") {
			t.Errorf("a testing policy is not a warning: %q", w)
		}
	}

	// status prints the same warnings, and they leave its exit code alone.
	out, errs, code := fx.c.run("", "status", "--since", "7d")
	if code != 0 {
		t.Errorf("status exit %d (stderr %q): policy warnings must not change it", code, errs)
	}
	if !strings.Contains(out, "Warning     "+example) {
		t.Errorf("status does not print the policy warning:\n%s", out)
	}
	// The table names the testing policy's would-be deferrals.
	table := fx.c.ok("report", "policies")
	if !strings.Contains(table, "testing.example publishes MTA-STS testing: enforce would have deferred 2 of 4 recorded deliveries, where mx.testing.example presented no certificate (anonymous TLS)") {
		t.Errorf("report policies table:\n%s", table)
	}
}
