package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mailtls/mailtls/internal/testnet"
	"github.com/mailtls/mailtls/report"
)

// deliveryKinds writes, for each kind of delivery, n[kind] of them as a
// real Postfix logs them, starting at t0, with queue IDs from seq. It
// returns the log text. Kinds: unknown (sent before any TLS line),
// verified13, untrusted12, anonymous12 (encrypted sent), plain (sent
// without TLS), forced (plaintext sent to forced.example), fallback (a
// failed handshake, deferred, then sent in plaintext: one TLS deferral and
// one fallback), deferred (connection refused), bounced; garbage lines are
// unparseable. (Postfix logs status=expired from qmgr, not from an smtp
// client, so no expired delivery is recorded from a log.)
func deliveryKinds(t0 time.Time, seq *int, n map[string]int) string {
	var b strings.Builder
	at := func() string {
		*seq++
		return t0.Add(time.Duration(*seq) * time.Second).UTC().Format("2006-01-02T15:04:05.000000+00:00")
	}
	qid := func() string { return fmt.Sprintf("%010X", 0xA000000000+*seq) }
	line := func(pid int, format string, args ...any) {
		fmt.Fprintf(&b, "%s mx1 postfix/smtp[%d]: "+format+"\n", append([]any{at(), pid}, args...)...)
	}
	sent := func(pid int, q, rcpt, host string) {
		line(pid, "%s: to=<%s>, relay=%s[192.0.2.10]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 ok)", q, rcpt, host)
	}
	for range n["unknown"] {
		sent(90, qid(), "u@unknown.example", "mx.unknown.example")
	}
	for _, k := range []struct{ kind, trust, proto string }{
		{"verified13", "Verified", "TLSv1.3"}, {"untrusted12", "Untrusted", "TLSv1.2"}, {"anonymous12", "Anonymous", "TLSv1.2"},
	} {
		for range n[k.kind] {
			q := qid()
			line(100, "%s TLS connection established to mx.tls.example[192.0.2.10]:25: %s with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", k.trust, k.proto)
			sent(100, q, "a@tls.example", "mx.tls.example")
		}
	}
	for range n["plain"] {
		sent(101, qid(), "p@plain.example", "mx.plain.example")
	}
	for range n["forced"] {
		sent(102, qid(), "f@forced.example", "mx.forced.example")
	}
	for range n["fallback"] {
		q := qid()
		line(103, "SSL_connect error to mx.fb.example[192.0.2.10]:25: -1")
		line(103, "%s: to=<f@fb.example>, relay=mx.fb.example[192.0.2.10]:25, delay=0.05, delays=0.01/0.01/0.03/0, dsn=4.7.5, status=deferred (Cannot start TLS: handshake failure)", q)
		line(104, "SSL_connect error to mx.fb.example[192.0.2.10]:25: -1")
		sent(104, q, "f@fb.example", "mx.fb.example")
	}
	for range n["deferred"] {
		line(105, "%s: to=<d@down.example>, relay=none, delay=1, delays=0/0/1/0, dsn=4.4.1, status=deferred (connect to mx.down.example[192.0.2.20]:25: Connection refused)", qid())
	}
	for range n["bounced"] {
		line(106, "%s: to=<x@nx.example>, relay=none, delay=0.1, delays=0.01/0/0.09/0, dsn=5.4.4, status=bounced (Host or domain name not found. Name service error for name=nx.example type=A: Host not found)", qid())
	}
	for range n["garbage"] {
		b.WriteString("\x00\x01 not a log line\n")
	}
	return b.String()
}

// scrape reads /metrics with the official text parser.
func scrape(t *testing.T, addr string) (map[string]*dto.MetricFamily, error) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// sumOf adds the values of a family's series whose labels include match.
func sumOf(fams map[string]*dto.MetricFamily, name string, match map[string]string) float64 {
	var total float64
	f := fams[name]
	if f == nil {
		return 0
	}
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range match {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		}
	}
	return total
}

type reportCounts struct {
	report.Summary
	expired, toForced int64
}

// storeCounts is what the store says, through the CLI: report --format
// json, plus deliveries --format jsonl for what the summary leaves out.
func storeCounts(t *testing.T, c *cliT) reportCounts {
	t.Helper()
	var r reportCounts
	if err := json.Unmarshal([]byte(c.ok("report", "--format", "json", "--since", "30d")), &r.Summary); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(c.ok("deliveries", "--format", "jsonl")))
	for sc.Scan() {
		var d struct {
			Domain, Status string
			TLS            *bool
		}
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		if d.Status == "expired" {
			r.expired++
		}
		if d.Domain == "forced.example" && d.Status == "sent" && d.TLS != nil && !*d.TLS {
			r.toForced++
		}
	}
	return r
}

// metricCounts reads the same figures from a scrape.
func metricCounts(fams map[string]*dto.MetricFamily) reportCounts {
	n := func(name string, kv ...string) int64 {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return int64(sumOf(fams, name, m))
	}
	r := reportCounts{Summary: report.Summary{
		Deliveries:  n("mailtls_deliveries_total", "status", "sent"),
		Encrypted:   n("mailtls_deliveries_total", "status", "sent", "tls", "encrypted"),
		Plaintext:   n("mailtls_deliveries_total", "status", "sent", "tls", "plaintext"),
		Unknown:     n("mailtls_deliveries_total", "status", "sent", "tls", "unknown"),
		Fallback:    n("mailtls_fallbacks_total"),
		Deferred:    n("mailtls_deliveries_total", "status", "deferred"),
		TLSDeferred: n("mailtls_tls_deferrals_total"),
		Bounced:     n("mailtls_deliveries_total", "status", "bounced"),
		ByTrust:     map[string]int64{},
		ByProtocol:  map[string]int64{},
	}}
	r.expired = n("mailtls_deliveries_total", "status", "expired")
	r.toForced = n("mailtls_plaintext_to_forced_total")
	if f := fams["mailtls_deliveries_tls_total"]; f != nil {
		for _, m := range f.Metric {
			v := int64(m.Counter.GetValue())
			for _, l := range m.Label {
				if v == 0 {
					continue
				}
				switch l.GetName() {
				case "trust":
					r.ByTrust[l.GetValue()] += v
				case "protocol":
					r.ByProtocol[l.GetValue()] += v
				}
			}
		}
	}
	return r
}

func (r reportCounts) String() string {
	return fmt.Sprintf("sent=%d enc=%d plain=%d unknown=%d fallback=%d deferred=%d tls_deferred=%d bounced=%d expired=%d to_forced=%d trust=%v proto=%v",
		r.Deliveries, r.Encrypted, r.Plaintext, r.Unknown, r.Fallback, r.Deferred, r.TLSDeferred, r.Bounced, r.expired, r.toForced, r.ByTrust, r.ByProtocol)
}

func (r reportCounts) minus(o reportCounts) reportCounts {
	d := reportCounts{Summary: report.Summary{
		Deliveries: r.Deliveries - o.Deliveries, Encrypted: r.Encrypted - o.Encrypted, Plaintext: r.Plaintext - o.Plaintext,
		Unknown: r.Unknown - o.Unknown, Fallback: r.Fallback - o.Fallback, Deferred: r.Deferred - o.Deferred,
		TLSDeferred: r.TLSDeferred - o.TLSDeferred, Bounced: r.Bounced - o.Bounced,
		ByTrust: map[string]int64{}, ByProtocol: map[string]int64{},
	}, expired: r.expired - o.expired, toForced: r.toForced - o.toForced}
	for _, m := range []struct{ dst, a, b map[string]int64 }{{d.ByTrust, r.ByTrust, o.ByTrust}, {d.ByProtocol, r.ByProtocol, o.ByProtocol}} {
		for k, v := range m.a {
			if v-m.b[k] != 0 {
				m.dst[k] = v - m.b[k]
			}
		}
	}
	return d
}

// followScrape runs `follow --http` over logPath until the follower has
// committed the whole file, and returns the last scrape.
func followScrape(t *testing.T, c *cliT, logPath string, extra ...string) map[string]*dto.MetricFamily {
	t.Helper()
	stop, addrs := c.backgroundListening(append([]string{"follow", "--log", logPath, "--poll", "20ms", "--http", "127.0.0.1:0"}, extra...)...)
	defer stop()
	addr := addrs["http"]
	var fams map[string]*dto.MetricFamily
	eventually(t, 30*time.Second, "the follower commits the whole log", func() (bool, string) {
		var err error
		fams, err = scrape(t, addr)
		if err != nil {
			return false, err.Error()
		}
		lag, ok := fams["mailtls_follower_lag_bytes"]
		return ok && lag.Metric[0].Gauge.GetValue() == 0 && sumOf(fams, "mailtls_follower_last_commit_timestamp_seconds", nil) > 0,
			fmt.Sprint(lag)
	})
	return fams
}

// TestMetricsMatchStore: after N stored deliveries of each kind, the
// counters of the `follow` process that stored them equal N, and equal
// what `report --format json` says for the same deliveries; a second
// process counts only what it stored itself, so lines read again after a
// restart are not counted twice.
func TestMetricsMatchStore(t *testing.T) {
	c := newCLI(t)
	c.ok("policy", "set", "forced.example", "encrypt")
	c.ok("policy", "set", "tls.example", "verify") // forced, but encrypted: not an alarm
	logPath := filepath.Join(t.TempDir(), "mail.log")
	n := map[string]int{"unknown": 2, "verified13": 3, "untrusted12": 4, "anonymous12": 1, "plain": 5,
		"forced": 2, "fallback": 3, "deferred": 6, "bounced": 7, "garbage": 4}
	seq := 0
	t0 := time.Now().Add(-2 * time.Hour)
	if err := os.WriteFile(logPath, []byte(deliveryKinds(t0, &seq, n)), 0o644); err != nil {
		t.Fatal(err)
	}
	fams := followScrape(t, c, logPath)
	got, want := metricCounts(fams), storeCounts(t, c)
	if got.String() != want.String() {
		t.Errorf("metrics differ from the store:\nmetrics %s\nstore   %s", got, want)
	}
	enc := n["verified13"] + n["untrusted12"] + n["anonymous12"]
	kinds := reportCounts{Summary: report.Summary{
		Deliveries: int64(n["unknown"] + enc + n["plain"] + n["forced"] + n["fallback"]),
		Encrypted:  int64(enc), Plaintext: int64(n["plain"] + n["forced"] + n["fallback"]), Unknown: int64(n["unknown"]),
		Fallback: int64(n["fallback"]), Deferred: int64(n["deferred"] + n["fallback"]), TLSDeferred: int64(n["fallback"]),
		Bounced:    int64(n["bounced"]),
		ByTrust:    map[string]int64{"verified": int64(n["verified13"]), "untrusted": int64(n["untrusted12"]), "anonymous": int64(n["anonymous12"])},
		ByProtocol: map[string]int64{"TLSv1.3": int64(n["verified13"]), "TLSv1.2": int64(n["untrusted12"] + n["anonymous12"])},
	}, toForced: int64(n["forced"])}
	if got.String() != kinds.String() {
		t.Errorf("metrics differ from the deliveries logged:\nmetrics %s\nlogged  %s", got, kinds)
	}
	if s := sumOf(fams, "mailtls_follower_lines_skipped_total", map[string]string{"reason": "unparseable"}); s != float64(n["garbage"]) {
		t.Errorf("lines skipped = %v, want %d", s, n["garbage"])
	}

	// A second process: the log grows; its counters are what it stored.
	before := want
	more := map[string]int{"verified13": 2, "plain": 1, "forced": 1, "bounced": 3, "garbage": 1}
	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(deliveryKinds(t0, &seq, more))
	f.Close()
	fams = followScrape(t, c, logPath)
	got, want = metricCounts(fams), storeCounts(t, c).minus(before)
	if got.String() != want.String() {
		t.Errorf("second process: metrics differ from what it stored:\nmetrics %s\nstore   %s", got, want)
	}
	if got.Deliveries != int64(more["verified13"]+more["plain"]+more["forced"]) || got.toForced != int64(more["forced"]) {
		t.Errorf("second process counted %s", got)
	}
	if s := sumOf(fams, "mailtls_follower_lines_skipped_total", nil); s != float64(more["garbage"]) {
		t.Errorf("second process: lines skipped = %v, want %d", s, more["garbage"])
	}
	// A third process reads a log whose deliveries were already imported:
	// it stores nothing, so it counts nothing.
	before = storeCounts(t, c)
	log2 := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(log2, []byte(deliveryKinds(t0, &seq, map[string]int{"plain": 2, "verified13": 1})), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok("import", "--quiet", log2)
	fams = followScrape(t, c, log2)
	if got := metricCounts(fams); got.Deliveries != 0 || sumOf(fams, "mailtls_deliveries_total", nil) != 0 {
		t.Errorf("re-reading stored deliveries counted %s", got)
	}
	if after := storeCounts(t, c).minus(before); after.Deliveries != 3 {
		t.Errorf("import stored %s, want 3 sent", after)
	}
	// A follower does not answer lookups: no lookup metrics.
	if _, ok := fams["mailtls_lookups_total"]; ok {
		t.Error("follow exports mailtls_lookups_total")
	}
}

// TestRunMetrics: `run --http` counts the lookups it answered, by source
// and result, and judges forced destinations by the daemon's own
// snapshot: with --default encrypt, every plaintext delivery was to a
// forced destination.
func TestRunMetrics(t *testing.T) {
	c := newCLI(t)
	c.ok("policy", "set", "forced.example", "verify")
	logPath := filepath.Join(t.TempDir(), "mail.log")
	seq := 0
	n := map[string]int{"verified13": 2, "plain": 3, "forced": 1}
	if err := os.WriteFile(logPath, []byte(deliveryKinds(time.Now().Add(-time.Hour), &seq, n)), 0o644); err != nil {
		t.Fatal(err)
	}
	stop, addrs := c.backgroundListening("run", "--log", logPath, "--poll", "20ms", "--socketmap", "127.0.0.1:0", "--tcp", "", "--http", "127.0.0.1:0", "--default", "encrypt",
		"--resolver", testnet.StartDNS(t, testnet.NewZone())) // default sources, an empty loopback zone
	defer stop()
	web := addrs["http"]
	conn, err := net.Dial("tcp", addrs["socketmap"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	ask := func(q string, times int) {
		for range times {
			fmt.Fprintf(conn, "%d:%s,", len(q), q)
			var l int
			if _, err := fmt.Fscanf(br, "%d:", &l); err != nil {
				t.Fatal(err)
			}
			if _, err := br.Discard(l + 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	ask("tlspolicy forced.example", 3)
	ask("tlspolicy a.example", 2)
	ask("nomap a.example", 1)
	var fams map[string]*dto.MetricFamily
	eventually(t, 30*time.Second, "the follower commits the whole log", func() (bool, string) {
		var err error
		if fams, err = scrape(t, web); err != nil {
			return false, err.Error()
		}
		lag, ok := fams["mailtls_follower_lag_bytes"]
		return ok && lag.Metric[0].Gauge.GetValue() == 0, fmt.Sprint(lag)
	})
	for _, x := range []struct {
		source, result string
		want           float64
	}{{"override", "ok", 3}, {"default", "ok", 2}, {"none", "perm", 1}, {"default", "notfound", 0}} {
		if got := sumOf(fams, "mailtls_lookups_total", map[string]string{"proto": "socketmap", "source": x.source, "result": x.result}); got != x.want {
			t.Errorf("lookups_total{source=%s,result=%s} = %v, want %v", x.source, x.result, got, x.want)
		}
	}
	if got := sumOf(fams, "mailtls_plaintext_to_forced_total", nil); got != float64(n["forced"]+n["plain"]) {
		t.Errorf("plaintext_to_forced_total = %v, want %d", got, n["forced"]+n["plain"])
	}
	if got := sumOf(fams, "mailtls_overrides", nil); got != 1 {
		t.Errorf("mailtls_overrides = %v, want 1", got)
	}
	resp, err := http.Get("http://" + web + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz: %s", resp.Status)
	}
}

// TestHTTPFlags: --http is validated like the other listeners.
func TestHTTPFlags(t *testing.T) {
	c := newCLI(t)
	for _, args := range [][]string{
		{"serve", "--socketmap", "127.0.0.1:0", "--tcp", "", "--http", "0.0.0.0:8472"},
		{"serve", "--socketmap", "127.0.0.1:0", "--tcp", "", "--http", "[::]:8472"},
		{"serve", "--socketmap", "127.0.0.1:0", "--tcp", "", "--http", "localhost"},
		{"follow", "--log", filepath.Join(t.TempDir(), "log"), "--http", "192.0.2.1:80"},
		{"follow", "--log", filepath.Join(t.TempDir(), "log"), "--http", "127.0.0.1:0", "--metrics-domains", "-1"},
	} {
		_, errs, code := c.run("", args...)
		if code != exitUsage || countLines(errs) != 1 || !strings.Contains(errs, "--") {
			t.Errorf("mailtls %s: exit %d, stderr %q; want exit 2 and one line", strings.Join(args, " "), code, errs)
		}
	}
}
