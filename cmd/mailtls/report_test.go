package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/bench/gen"
)

// TestReportMatchesGeneratorTruth imports a generated log and checks every
// summary number against the truth computed here, from the generator's own
// record of what it wrote.
func TestReportMatchesGeneratorTruth(t *testing.T) {
	c := newCLI(t)
	start := time.Now().UTC().Add(-10 * 24 * time.Hour).Truncate(time.Hour)
	var buf bytes.Buffer
	truth, err := gen.Log(&buf, gen.LogConfig{Seed: 42, Start: start, Duration: 9 * 24 * time.Hour, Lines: 60_000, Domains: 150})
	if err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(logFile, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok("import", "--quiet", logFile)

	// A window that cuts through days on both ends.
	since := start.Add(30*time.Hour + 17*time.Minute + 13*time.Second)
	until := start.Add(6*24*time.Hour + 5*time.Hour + 41*time.Minute)
	in := func(d gen.TruthDelivery) bool { return !d.Time.Before(since) && d.Time.Before(until) }

	var (
		sent, enc, plain, unknown, fallback, deferred, tlsDeferred, bounced int
		byTrust                                                             = map[string]float64{}
		byProto                                                             = map[string]float64{}
		domains                                                             = map[string]*tally{}
		days                                                                = map[string]*tally{}
	)
	for _, d := range truth.Deliveries {
		if !in(d) {
			continue
		}
		switch d.Status {
		case "sent":
			sent++
			if domains[d.Domain] == nil {
				domains[d.Domain] = &tally{}
			}
			day := d.Time.UTC().Format("2006-01-02")
			if days[day] == nil {
				days[day] = &tally{}
			}
			domains[d.Domain].sent++
			days[day].sent++
			switch {
			case d.TLS == nil:
				unknown++
			case *d.TLS:
				enc++
				domains[d.Domain].enc++
				days[day].enc++
				byTrust[strings.ToLower(string(d.TLSTrust))]++
				byProto[d.TLSProtocol]++
			default:
				plain++
				domains[d.Domain].plain++
				days[day].plain++
			}
			if d.Fallback {
				fallback++
			}
		case "deferred":
			deferred++
			if d.TLSFailure {
				tlsDeferred++
			}
		case "bounced":
			bounced++
		}
	}
	var allTLS, anyPlain int
	for _, d := range domains {
		if d.enc == d.sent {
			allTLS++
		}
		if d.plain > 0 {
			anyPlain++
		}
	}
	if sent < 1000 || enc == 0 || plain == 0 || fallback == 0 || tlsDeferred == 0 {
		t.Fatalf("generated log too thin for the test: sent %d enc %d plain %d fallback %d tls_deferred %d", sent, enc, plain, fallback, tlsDeferred)
	}
	cov := math.Round(float64(enc)/float64(enc+plain)*10000) / 10000
	t.Logf("truth: sent %d enc %d plain %d unknown %d fallback %d deferred %d tls_deferred %d bounced %d domains %d", sent, enc, plain, unknown, fallback, deferred, tlsDeferred, bounced, len(domains))

	win := []string{"--since", since.Format(time.RFC3339), "--until", until.Format(time.RFC3339)}
	var got map[string]any
	if err := json.Unmarshal([]byte(c.ok(append([]string{"report", "--format", "json"}, win...)...)), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"deliveries": float64(sent), "encrypted": float64(enc), "plaintext": float64(plain), "unknown": float64(unknown),
		"fallback": float64(fallback), "coverage": cov, "deferred": float64(deferred), "tls_deferred": float64(tlsDeferred),
		"bounced": float64(bounced), "domains": float64(len(domains)), "domains_all_tls": float64(allTLS),
		"domains_any_plaintext": float64(anyPlain), "internal": 0,
	}
	for k, v := range want {
		if g, ok := got[k].(float64); !ok || g != v {
			t.Errorf("report %s = %v, truth %v", k, got[k], v)
		}
	}
	for field, m := range map[string]map[string]float64{"by_trust": byTrust, "by_protocol": byProto} {
		gm, _ := got[field].(map[string]any)
		if len(gm) != len(m) {
			t.Errorf("%s = %v, truth %v", field, gm, m)
		}
		for k, v := range m {
			if gm[k] != v {
				t.Errorf("%s[%s] = %v, truth %v", field, k, gm[k], v)
			}
		}
	}
	if len(got) != 15 {
		t.Errorf("summary has %d fields, the contract has 15: %v", len(got), got)
	}

	// One --by domain row: the busiest domain.
	names := make([]string, 0, len(domains))
	for n := range domains {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if domains[names[i]].sent != domains[names[j]].sent {
			return domains[names[i]].sent > domains[names[j]].sent
		}
		return names[i] < names[j]
	})
	checkRow(t, c, append([]string{"report", "--format", "json", "--by", "domain"}, win...), names[0], domains[names[0]])
	// --sort plaintext --top 5: the five domains that got the most
	// plaintext (ties: most sent, then name), with the truth's counts.
	byPlain := append([]string(nil), names...)
	sort.SliceStable(byPlain, func(i, j int) bool { return domains[byPlain[i]].plain > domains[byPlain[j]].plain })
	var top struct {
		Rows []struct {
			Key       string `json:"key"`
			Plaintext int    `json:"plaintext"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(c.ok(append([]string{"report", "--format", "json", "--by", "domain", "--sort", "plaintext", "--top", "5"}, win...)...)), &top); err != nil {
		t.Fatal(err)
	}
	if len(top.Rows) != 5 || domains[byPlain[0]].plain == 0 {
		t.Fatalf("--sort plaintext --top 5: %+v", top.Rows)
	}
	for i, r := range top.Rows {
		if r.Key != byPlain[i] || r.Plaintext != domains[byPlain[i]].plain {
			t.Errorf("--sort plaintext row %d = %+v, truth %s with %d plaintext", i, r, byPlain[i], domains[byPlain[i]].plain)
		}
	}
	for _, bad := range [][]string{{"--by", "domain", "--sort", "worst"}, {"--sort", "plaintext"}, {"--by", "day", "--sort", "coverage"}} {
		if _, errs, code := c.run("", append([]string{"report"}, bad...)...); code != exitUsage || strings.Count(errs, "\n") != 1 {
			t.Errorf("report %v: exit %d, stderr %q; want a one-line usage error", bad, code, errs)
		}
	}
	// One --by day row: a whole day inside the window.
	day := since.Add(48 * time.Hour).UTC().Format("2006-01-02")
	checkRow(t, c, append([]string{"report", "--format", "json", "--by", "day"}, win...), day, days[day])
}

type tally struct{ sent, enc, plain int }

func checkRow(t *testing.T, c *cliT, args []string, key string, want *tally) {
	t.Helper()
	if want == nil {
		t.Fatalf("no truth for row %q", key)
	}
	var out struct {
		Rows []struct {
			Key        string  `json:"key"`
			Deliveries int     `json:"deliveries"`
			Encrypted  int     `json:"encrypted"`
			Plaintext  int     `json:"plaintext"`
			Coverage   float64 `json:"coverage"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(c.ok(args...)), &out); err != nil {
		t.Fatal(err)
	}
	for _, r := range out.Rows {
		if r.Key != key {
			continue
		}
		cov := 0.0
		if want.enc+want.plain > 0 {
			cov = math.Round(float64(want.enc)/float64(want.enc+want.plain)*10000) / 10000
		}
		if r.Deliveries != want.sent || r.Encrypted != want.enc || r.Plaintext != want.plain || r.Coverage != cov {
			t.Errorf("%v row %s = %+v, truth %+v coverage %v", args, key, r, *want, cov)
		}
		return
	}
	t.Errorf("%v: no row %q in %+v", args, key, out.Rows)
}

// plantedLog writes Postfix lines for hand-made histories.
type plantedLog struct {
	b   strings.Builder
	pid int
	qid int
}

func (p *plantedLog) deliver(at time.Time, domain, trust string) {
	p.pid++
	p.qid++
	ts := func(d time.Duration) string { return at.Add(d).UTC().Format("2006-01-02T15:04:05.000000+00:00") }
	relay := fmt.Sprintf("mx.%s[192.0.2.%d]:25", domain, 10+len(domain)%200)
	if trust != "" {
		fmt.Fprintf(&p.b, "%s mx1 postfix/smtp[%d]: %s TLS connection established to %s: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n", ts(0), p.pid, trust, relay)
	}
	fmt.Fprintf(&p.b, "%s mx1 postfix/smtp[%d]: %010X: to=<u%d@%s>, relay=%s, delay=1.2, delays=0.1/0/0.6/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)\n",
		ts(time.Second), p.pid, p.qid, p.qid, domain, relay)
}

func TestDowngradesSuggestDryRun(t *testing.T) {
	c := newCLI(t)
	now := time.Now().UTC()
	day := func(n int, i int) time.Time {
		return now.Add(-time.Duration(n)*24*time.Hour + time.Duration(i)*time.Minute)
	}
	var p plantedLog
	for d := 9; d >= 1; d-- { // nine days of history
		for i := 0; i < 3; i++ {
			p.deliver(day(d, i), "safe.example", "Verified")
			p.deliver(day(d, i), "enc.example", "Untrusted")
			if d == 5 && i == 0 {
				p.deliver(day(d, i), "oneplain.example", "")
			} else {
				p.deliver(day(d, i), "oneplain.example", "Trusted")
			}
			p.deliver(day(d, i), "alwaysplain.example", "")
			if d >= 3 {
				p.deliver(day(d, i), "downgrade.example", "Verified")
			} else {
				p.deliver(day(d, i), "downgrade.example", "") // TLS for days, then plaintext
			}
		}
		if d <= 3 {
			p.deliver(day(d, 5), "few.example", "Verified")
		}
	}
	f := filepath.Join(t.TempDir(), "planted.log")
	if err := os.WriteFile(f, []byte(p.b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok("import", "--quiet", f)

	var dg struct {
		Downgrades []struct {
			Domain string `json:"domain"`
			Count  int    `json:"count"`
		} `json:"downgrades"`
	}
	if err := json.Unmarshal([]byte(c.ok("report", "downgrades", "--since", "30d", "--format", "json")), &dg); err != nil {
		t.Fatal(err)
	}
	flagged := map[string]int{}
	for _, d := range dg.Downgrades {
		flagged[d.Domain] = d.Count
	}
	if flagged["downgrade.example"] != 6 {
		t.Errorf("downgrade.example: want 6 plaintext deliveries after TLS, got %v", dg.Downgrades)
	}
	if _, ok := flagged["alwaysplain.example"]; ok {
		t.Errorf("always-plaintext domain flagged as a downgrade: %v", dg.Downgrades)
	}

	var sg struct {
		Suggestions []struct {
			Domain string `json:"domain"`
			Level  string `json:"level"`
		} `json:"suggestions"`
	}
	if err := json.Unmarshal([]byte(c.ok("suggest", "--format", "json")), &sg); err != nil {
		t.Fatal(err)
	}
	levels := map[string]string{}
	for _, s := range sg.Suggestions {
		levels[s.Domain] = s.Level
	}
	if levels["safe.example"] != "verify" {
		t.Errorf("always-verified domain: suggestions %v", levels)
	}
	if levels["enc.example"] != "encrypt" {
		t.Errorf("always-untrusted TLS domain: suggestions %v", levels)
	}
	for _, no := range []string{"oneplain.example", "few.example", "alwaysplain.example", "downgrade.example"} {
		if l, ok := levels[no]; ok {
			t.Errorf("%s must not be suggested, got %s", no, l)
		}
	}
	if len(c.overrides()) != 0 {
		t.Fatal("suggest without --apply changed the overrides")
	}

	out := c.ok("policy", "set", "oneplain.example", "encrypt", "--dry-run")
	if !strings.Contains(out, "27 deliveries to oneplain.example; 1 was plaintext and would have been deferred") {
		t.Errorf("dry run: %q", out)
	}
	if len(c.overrides()) != 0 {
		t.Fatal("--dry-run changed the overrides")
	}
	c.ok("suggest", "--apply")
	got := map[string]string{}
	for _, o := range c.overrides() {
		got[o["key"].(string)] = o["policy"].(string)
	}
	if got["safe.example"] != "verify" || got["enc.example"] != "encrypt" || len(got) != 2 {
		t.Errorf("suggest --apply wrote %v", got)
	}
}
