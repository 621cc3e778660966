package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/mailtls/mailtls/bench/gen"
	"github.com/mailtls/mailtls/published"
	"github.com/mailtls/mailtls/report"
	"github.com/mailtls/mailtls/store"
)

// hostileDomain is a recipient domain as a hostile sender could get it
// into the log: the real import stores it as it is. It holds no '>' or
// '"', which end or quote the address in to=<...> (see logparse.cutAddr),
// but unescaped it would still be markup: an img element with a handler,
// an attribute break-out and an entity.
const hostileDomain = `<img src=x onerror=alert(2)//'&amp;<script src=data:,alert(1)//.evil.example`

// htmlFixture is a database filled through the real import: a generated
// log, a planted downgrade, a hostile domain name and two overrides. It
// returns the report window, cutting through days on both ends.
func htmlFixture(t *testing.T, c *cliT) (since, until time.Time) {
	t.Helper()
	start := time.Now().UTC().Add(-10 * 24 * time.Hour).Truncate(time.Hour)
	var buf bytes.Buffer
	if _, err := gen.Log(&buf, gen.LogConfig{Seed: 7, Start: start, Duration: 9 * 24 * time.Hour, Lines: 20_000, Domains: 80}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gen := filepath.Join(dir, "mail.log")
	if err := os.WriteFile(gen, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// TLS for days, then plaintext: a downgrade, for the plain and the
	// hostile domain.
	var p plantedLog
	for d := 8; d >= 2; d-- {
		at := start.Add(time.Duration(9-d) * 24 * time.Hour).Add(7 * time.Hour)
		trust := "Verified"
		if d <= 4 {
			trust = ""
		}
		p.deliver(at, "downgrade.example", trust)
		p.pid++
		p.qid++
		ts := func(off time.Duration) string { return at.Add(off).UTC().Format("2006-01-02T15:04:05.000000+00:00") }
		// Postfix logs only valid host names as relays, and the correlator
		// keeps TLS sessions only for relays without markup characters.
		relay := "mx.evil.example[192.0.2.66]:25"
		if trust != "" {
			fmt.Fprintf(&p.b, "%s mx1 postfix/smtp[%d]: Trusted TLS connection established to %s: TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)\n", ts(0), p.pid, relay)
		}
		fmt.Fprintf(&p.b, "%s mx1 postfix/smtp[%d]: %010X: to=<u%d@%s>, relay=%s, delay=1.2, delays=0.1/0/0.6/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)\n",
			ts(2*time.Second), p.pid, p.qid, p.qid, hostileDomain, relay)
	}
	planted := filepath.Join(dir, "planted.log")
	if err := os.WriteFile(planted, []byte(p.b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// Deliveries imported before any TLS summary line was seen: TLS unknown
	// (as with smtp_tls_loglevel = 0).
	var legacy plantedLog
	legacy.pid, legacy.qid = 50_000, 50_000
	for d := 0; d < 9; d++ {
		for i := 0; i < 6+3*(d%3); i++ {
			legacy.deliver(start.Add(time.Duration(d)*24*time.Hour+time.Duration(9+i)*time.Hour), "legacy.example", "")
		}
	}
	unknown := filepath.Join(dir, "legacy.log")
	if err := os.WriteFile(unknown, []byte(legacy.b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok("import", "--quiet", unknown)
	c.ok("import", "--quiet", gen)
	c.ok("import", "--quiet", planted)
	c.ok("policy", "set", ".example.com", "encrypt")
	c.ok("policy", "set", "downgrade.example", "verify", "match=hostname:nexthop")
	// Published answers: downgrade.example publishes enforce (its
	// plaintext deliveries would have failed), legacy.example testing with
	// an mx pattern its relay does not match.
	enforce := "secure match=mx.downgrade.example servername=hostname"
	savePublished(t, c, start, published.Result{Domain: "downgrade.example", Source: published.SourceMTASTS, Policy: enforce, Evidence: published.Evidence{
		MTASTS: &published.STSEvidence{ID: "1", Mode: "enforce", MX: []string{"mx.downgrade.example"}, MaxAge: 604800, Answer: enforce}}}, "1")
	savePublished(t, c, start, published.Result{Domain: "legacy.example", Source: published.SourceNone, Evidence: published.Evidence{
		MTASTS: &published.STSEvidence{ID: "2", Mode: "testing", MX: []string{"mx.other.example"}, MaxAge: 604800,
			Answer: "secure match=mx.other.example servername=hostname"}}}, "2")
	return start.Add(30*time.Hour + 17*time.Minute + 13*time.Second), start.Add(8*24*time.Hour + 5*time.Hour + 41*time.Minute)
}

// jsonReport is what `report --format json` and its relatives print for
// a window: the page must show exactly these numbers.
type jsonReport struct {
	Summary    map[string]json.RawMessage
	Days       report.Rows
	Plaintext  []report.Row
	Downgrades report.Downgrades
	Overrides  report.Overrides
	Policies   report.Policies
}

func loadJSONReport(t *testing.T, c *cliT, win []string) jsonReport {
	t.Helper()
	var j jsonReport
	var plain report.Rows
	for _, q := range []struct {
		args []string
		into any
	}{
		{[]string{"report", "--format", "json"}, &j.Summary},
		{[]string{"report", "--format", "json", "--by", "day"}, &j.Days},
		{[]string{"report", "--format", "json", "--by", "domain", "--sort", "plaintext", "--top", "10"}, &plain},
		{[]string{"report", "downgrades", "--format", "json"}, &j.Downgrades},
		{[]string{"report", "overrides", "--format", "json"}, &j.Overrides},
		{[]string{"report", "policies", "--format", "json"}, &j.Policies},
	} {
		if err := json.Unmarshal([]byte(c.ok(append(q.args, win...)...)), q.into); err != nil {
			t.Fatalf("%v: %v", q.args, err)
		}
	}
	for _, r := range plain.Rows {
		if r.Plaintext > 0 {
			j.Plaintext = append(j.Plaintext, r)
		}
	}
	return j
}

// domView is what the browser reads back from the rendered page.
type domView struct {
	Title    string                       `json:"title"`
	Metrics  map[string]string            `json:"metrics"`
	Tables   map[string][]domRow          `json:"tables"`
	Points   []string                     `json:"points"`
	PTitles  []string                     `json:"pointTitles"`
	Series   map[string]int               `json:"series"`
	Bars     map[string][]domBar          `json:"bars"`
	Scripts  int                          `json:"scripts"`
	Images   int                          `json:"images"`
	ChartW   float64                      `json:"chartWidth"`
	Sections map[string]bool              `json:"sections"`
	Extra    map[string]map[string]string `json:"extra"`
	PolicyW  int                          `json:"policyWarnings"`
}

type domRow struct {
	Key    string            `json:"key"`
	Head   string            `json:"head"`
	Fields map[string]string `json:"fields"`
}

type domBar struct {
	Key   string  `json:"key"`
	Value string  `json:"value"`
	Label string  `json:"label"`
	Width float64 `json:"width"`
}

const readDOM = `(() => {
  const out = {title: document.title, metrics: {}, tables: {}, points: [], series: {}, bars: {},
    scripts: document.getElementsByTagName('script').length, images: document.getElementsByTagName('img').length,
    chartWidth: 0, sections: {}};
  document.querySelectorAll('[data-metric]').forEach(e => out.metrics[e.dataset.metric] = e.textContent);
  document.querySelectorAll('table[data-table]').forEach(t => {
    out.tables[t.dataset.table] = [...t.querySelectorAll('tbody tr')].map(r => {
      const f = {};
      r.querySelectorAll('[data-field]').forEach(c => f[c.dataset.field] = c.dataset.value || c.textContent);
      return {key: r.dataset.key, head: r.querySelector('th').textContent, fields: f};
    });
  });
  out.points = [...document.querySelectorAll('#day-chart circle.point')].map(c => c.dataset.day);
  out.pointTitles = [...document.querySelectorAll('#day-chart circle.point title')].map(e => e.textContent);
  document.querySelectorAll('#day-chart polyline[data-series]').forEach(p => out.series[p.dataset.series] = p.points.numberOfItems);
  document.querySelectorAll('svg.bars').forEach(s => out.bars[s.dataset.chart] =
    [...s.querySelectorAll('g.barrow')].map(g => ({key: g.dataset.key, value: g.dataset.value,
      label: g.querySelector('text.label').textContent, width: g.querySelector('rect').getBBox().width})));
  const ch = document.getElementById('day-chart');
  if (ch) out.chartWidth = ch.getBoundingClientRect().width;
  document.querySelectorAll('main section[id]').forEach(s => out.sections[s.id] = true);
  out.policyWarnings = document.querySelectorAll('[data-policy-warning]').length;
  return out;
})()`

// chromiumPath finds the browser. In CI (CI=true) a missing browser fails
// the test, since .ci/deps installs it; elsewhere the test is skipped.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed, and CI must run the browser test: .ci/deps installs the Debian package chromium")
	}
	t.Skip("chromium is not installed: skipping the browser test (apt-get install chromium, or run .ci/deps, to run it)")
	return ""
}

// browser runs one headless Chromium for a test, with every flag that
// keeps it off the network and a fresh profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath(t)
	// Not t.TempDir: the browser's helper processes can still write in
	// the profile for a moment after it stops, which would fail the test
	// in cleanup. The profile is removed on a best-effort basis instead.
	profile, err := os.MkdirTemp("", "mailtls-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 20 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(50 * time.Millisecond) // cleanup only: decides nothing
		}
	})
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(profile),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(1400, 1000),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// pageLoad is one page opened in the browser: what it showed, and what
// went wrong while loading it.
type pageLoad struct {
	dom      domView
	problems []string // console errors, exceptions, dialogs
	requests []string // every URL the page requested
}

func openPage(t *testing.T, bctx context.Context, u string, shot string, width int64) pageLoad {
	t.Helper()
	tctx, cancel := chromedp.NewContext(bctx)
	defer cancel()
	var (
		mu sync.Mutex
		pl pageLoad
	)
	err := chromedp.Listen(tctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			switch e.Type {
			case runtime.ConsoleAPICalledTypeError, runtime.ConsoleAPICalledTypeWarning, runtime.ConsoleAPICalledTypeAssert:
				pl.problems = append(pl.problems, fmt.Sprintf("console %s: %v", e.Type, e.Args))
			}
		case *runtime.EventExceptionThrown:
			pl.problems = append(pl.problems, "exception: "+(&chromedp.ExceptionError{ExceptionDetails: e.ExceptionDetails}).Error())
		case *log.EventEntryAdded:
			if e.Entry.Level == log.EntryLevelError || e.Entry.Level == log.EntryLevelWarning {
				pl.problems = append(pl.problems, fmt.Sprintf("log %s: %s %s", e.Entry.Level, e.Entry.Text, e.Entry.URL))
			}
		case *page.EventJavascriptDialogOpening:
			pl.problems = append(pl.problems, "dialog: "+e.Message)
			go chromedp.Call(tctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{}) //nolint:errcheck // best effort
		case *network.EventRequestWillBeSent:
			pl.requests = append(pl.requests, e.Request.URL)
		}
	})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	if _, err := chromedp.Call(tctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("network.enable: %v", err)
	}
	if err := chromedp.Do(tctx, chromedp.EmulateViewport(width, 900), chromedp.Navigate(u), chromedp.WaitReady("footer")); err != nil {
		t.Fatalf("open %s: %v", u, err)
	}
	raw, err := chromedp.Run(tctx, chromedp.Evaluate[json.RawMessage](readDOM))
	if err != nil {
		t.Fatalf("read the DOM of %s: %v", u, err)
	}
	if err := json.Unmarshal(raw, &pl.dom); err != nil {
		t.Fatalf("read the DOM of %s: %v", u, err)
	}
	if shot != "" {
		png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(shot, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s: %d bytes", shot, len(png))
	}
	mu.Lock()
	defer mu.Unlock()
	return pl
}

// TestHTMLReportInBrowser writes the HTML report with the CLI and serves
// it with report.Handler, opens both in headless Chromium, and checks
// that they load without a console error or a request for anything else,
// that the charts have one point per day with mail, and that every
// number on the page equals report --format json for the same window.
// With MAILTLS_SCREENSHOTS=DIR it also writes the screenshots in docs/.
func TestHTMLReportInBrowser(t *testing.T) {
	bctx := browser(t)
	c := newCLI(t)
	since, until := htmlFixture(t, c)
	win := []string{"--since", since.Format(time.RFC3339), "--until", until.Format(time.RFC3339)}
	want := loadJSONReport(t, c, win)
	var unk int64
	if err := json.Unmarshal(want.Summary["unknown"], &unk); err != nil || unk == 0 {
		t.Fatalf("fixture has no delivery with unknown TLS (%s)", want.Summary["unknown"])
	}
	if len(want.Days.Rows) < 5 || len(want.Plaintext) < 3 || len(want.Downgrades.Downgrades) < 2 || len(want.Overrides.Rows) != 2 {
		t.Fatalf("fixture too thin: %d days, %d plaintext rows, %d downgrades, %d overrides",
			len(want.Days.Rows), len(want.Plaintext), len(want.Downgrades.Downgrades), len(want.Overrides.Rows))
	}

	file, u := htmlOutputs(t, c, win)
	_, live := htmlOutputs(t, c, win, true)
	shots := os.Getenv("MAILTLS_SCREENSHOTS")
	for _, load := range []struct{ name, url, shot string }{{"file", "file://" + file, ""}, {"http", u, shots}, {"serve", live, ""}} {
		t.Run(load.name, func(t *testing.T) {
			shot := ""
			if load.shot != "" {
				shot = filepath.Join(load.shot, "report-wide.png")
			}
			pl := openPage(t, bctx, load.url, shot, 1400)
			if len(pl.problems) > 0 {
				t.Errorf("loading the page: %q", pl.problems)
			}
			if len(pl.requests) != 1 {
				t.Errorf("the page made %d requests, want only itself: %q", len(pl.requests), pl.requests)
			}
			checkPage(t, pl.dom, want)
		})
	}
	if shots != "" {
		openPage(t, bctx, u, filepath.Join(shots, "report-narrow.png"), 480)
	}
}

// htmlOutputs writes the CLI's HTML report for win to a file, serves
// report.Handler on 127.0.0.1 for the same database, and checks that the
// handler answers the URL for the same window with the same bytes. With
// live, the URL is that of a running `mailtls serve --http` instead.
func htmlOutputs(t *testing.T, c *cliT, win []string, live ...bool) (file, u string) {
	t.Helper()
	file = filepath.Join(t.TempDir(), "tls.html")
	html := c.ok(append([]string{"report", "--format", "html"}, win...)...)
	if err := os.WriteFile(file, []byte(html), 0o644); err != nil {
		t.Fatal(err)
	}

	st, err := store.Open(context.Background(), c.db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	base := ""
	if len(live) > 0 && live[0] {
		d := startServe(t, c, "--http", "127.0.0.1:0")
		if d.http == "" {
			t.Fatal("serve did not report its HTTP listener")
		}
		base = "http://" + d.http
	} else {
		srv := httptest.NewServer(report.Handler(st, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil))))
		t.Cleanup(srv.Close)
		base = srv.URL
	}
	u = base + "/?" + url.Values{"since": {win[1]}, "until": {win[3]}}.Encode()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(served) != html {
		t.Fatalf("GET %s: %s, %d bytes; want the CLI's %d bytes", u, resp.Status, len(served), len(html))
	}

	return file, u
}

// TestHTMLReportCLIAndHandler needs no browser: the CLI's page and the
// handler's are the same bytes, and --format html refuses the flags of a
// breakdown.
func TestHTMLReportCLIAndHandler(t *testing.T) {
	c := newCLI(t)
	since, until := htmlFixture(t, c)
	win := []string{"--since", since.Format(time.RFC3339), "--until", until.Format(time.RFC3339)}
	file, _ := htmlOutputs(t, c, win)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("&lt;img src=x onerror=alert(2)//&#39;&amp;amp;&lt;script src=data:,alert(1)//.evil.example")) ||
		bytes.Contains(b, []byte("<script")) || bytes.Contains(b, []byte("<img")) {
		t.Errorf("the hostile domain is not escaped in the page")
	}
	// After pruning, a window that starts mid-day before the horizon is
	// narrowed to whole days, in the CLI's page as in the handler's.
	c.ok("prune", "--older-than", "5d")
	file, _ = htmlOutputs(t, c, win)
	if b, err = os.ReadFile(file); err != nil {
		t.Fatal(err)
	}
	fitted := since.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour).Format(time.RFC3339)
	if !bytes.Contains(b, []byte(`id="pruned"`)) || !bytes.Contains(b, []byte(`data-since="`+fitted+`"`)) {
		t.Errorf("after prune: the page does not say it covers from %s", fitted)
	}
	for _, bad := range [][]string{{"--by", "day"}, {"--top", "3"}, {"--sort", "plaintext"}} {
		args := append([]string{"report", "--format", "html"}, bad...)
		if out, errs, code := c.run("", args...); code != exitUsage || out != "" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "--format html") {
			t.Errorf("%v: exit %d, stdout %d bytes, stderr %q; want a one-line usage error", args, code, len(out), errs)
		}
	}
}

// checkPage compares every number read from the page with the JSON.
func checkPage(t *testing.T, d domView, j jsonReport) {
	t.Helper()
	if d.Scripts != 0 || d.Images != 0 {
		t.Errorf("page has %d script and %d img elements; want none (the hostile domain must stay text)", d.Scripts, d.Images)
	}
	if d.ChartW < 300 {
		t.Errorf("day chart rendered %.0f px wide", d.ChartW)
	}
	for _, s := range []string{"summary", "days", "plaintext", "downgrades", "overrides", "policies", "trust", "protocol"} {
		if !d.Sections[s] {
			t.Errorf("no section %q on the page (have %v)", s, d.Sections)
		}
	}
	// The summary: every scalar of the JSON, and nothing else.
	scalars := 0
	for k, v := range j.Summary {
		if k == "by_trust" || k == "by_protocol" {
			continue
		}
		scalars++
		got, ok := d.Metrics[k]
		if !ok {
			t.Errorf("summary %s (%s) is not on the page", k, v)
			continue
		}
		sameNumber(t, "summary "+k, got, string(v))
	}
	if len(d.Metrics) != scalars {
		t.Errorf("page shows %d summary numbers, the JSON has %d: %v", len(d.Metrics), scalars, d.Metrics)
	}
	for name, field := range map[string]string{"by_trust": "trust", "by_protocol": "protocol"} {
		var m map[string]int64
		if err := json.Unmarshal(j.Summary[name], &m); err != nil {
			t.Fatal(err)
		}
		rows := d.Tables[name]
		bars := d.Bars[field]
		if len(rows) != len(m) || len(bars) != len(m) {
			t.Errorf("%s: %d table rows and %d bars, JSON %v", name, len(rows), len(bars), m)
		}
		for _, r := range rows {
			n, ok := m[r.Key]
			if !ok || r.Head != r.Key {
				t.Errorf("%s row %q (%q) not in the JSON %v", name, r.Key, r.Head, m)
			}
			sameNumber(t, name+" "+r.Key, r.Fields["count"], strconv.FormatInt(n, 10))
		}
		for _, b := range bars {
			sameNumber(t, name+" bar "+b.Key, b.Value, strconv.FormatInt(m[b.Key], 10))
			sameNumber(t, name+" bar label "+b.Key, b.Label, strconv.FormatInt(m[b.Key], 10))
			if b.Width < 1 {
				t.Errorf("%s bar %s is %.1f wide", name, b.Key, b.Width)
			}
		}
	}
	// Days: the table and the chart's points.
	days := d.Tables["days"]
	if len(days) != len(j.Days.Rows) {
		t.Errorf("days table has %d rows, JSON --by day %d", len(days), len(j.Days.Rows))
	}
	for i, r := range j.Days.Rows {
		if i >= len(days) {
			break
		}
		checkDOMRow(t, "day", days[i], r.Key, map[string]string{"deliveries": itoa(r.Deliveries), "encrypted": itoa(r.Encrypted),
			"plaintext": itoa(r.Plaintext), "unknown": itoa(r.Deliveries - r.Encrypted - r.Plaintext), "coverage": string(r.Coverage)})
	}
	var keys []string
	for _, r := range j.Days.Rows {
		keys = append(keys, r.Key)
	}
	if strings.Join(d.Points, " ") != strings.Join(keys, " ") {
		t.Errorf("chart points %v, days with mail %v", d.Points, keys)
	}
	// Each point's tooltip: "DAY: N sent, N encrypted, N plaintext, N unknown; coverage N%".
	tip := regexp.MustCompile(`^(\S+): ([\d,]+) sent, ([\d,]+) encrypted, ([\d,]+) plaintext, ([\d,]+) unknown; coverage ([\d.]+%)$`)
	for i, r := range j.Days.Rows {
		var m []string
		if i < len(d.PTitles) {
			m = tip.FindStringSubmatch(d.PTitles[i])
		}
		if m == nil || m[1] != r.Key {
			t.Errorf("point %d (%s): tooltip %q", i, r.Key, d.PTitles[i:min(i+1, len(d.PTitles))])
			continue
		}
		for k, want := range []string{itoa(r.Deliveries), itoa(r.Encrypted), itoa(r.Plaintext), itoa(r.Deliveries - r.Encrypted - r.Plaintext), string(r.Coverage)} {
			sameNumber(t, "point "+r.Key+" tooltip", m[k+2], want)
		}
	}
	for _, s := range []string{"encrypted", "plaintext", "unknown"} {
		if d.Series[s] != len(keys) {
			t.Errorf("chart series %s has %d points, want %d (days with mail)", s, d.Series[s], len(keys))
		}
	}
	// Who got plaintext.
	plain := d.Tables["plaintext"]
	if len(plain) != len(j.Plaintext) || len(d.Bars["plaintext"]) != len(j.Plaintext) {
		t.Errorf("plaintext: %d rows and %d bars, JSON %d rows", len(plain), len(d.Bars["plaintext"]), len(j.Plaintext))
	}
	for i, r := range j.Plaintext {
		if i < len(d.Bars["plaintext"]) {
			b := d.Bars["plaintext"][i]
			if want := fmt.Sprintf("%s plaintext of %s sent", report.Num(r.Plaintext), report.Num(r.Deliveries)); b.Key != r.Key || b.Label != want {
				t.Errorf("plaintext bar %d: %q %q, JSON %q %q", i, b.Key, b.Label, r.Key, want)
			}
			sameNumber(t, "plaintext bar "+r.Key, b.Value, itoa(r.Plaintext))
		}
		if i >= len(plain) {
			break
		}
		checkDOMRow(t, "plaintext", plain[i], r.Key, map[string]string{"deliveries": itoa(r.Deliveries), "encrypted": itoa(r.Encrypted),
			"plaintext": itoa(r.Plaintext), "coverage": string(r.Coverage)})
	}
	// Downgrades and overrides.
	dg := d.Tables["downgrades"]
	if len(dg) != len(j.Downgrades.Downgrades) {
		t.Errorf("downgrades: %d rows, JSON %d", len(dg), len(j.Downgrades.Downgrades))
	}
	hostile := false
	for i, r := range j.Downgrades.Downgrades {
		if i >= len(dg) {
			break
		}
		hostile = hostile || dg[i].Head == hostileDomain
		checkDOMRow(t, "downgrade", dg[i], r.Domain, map[string]string{"count": itoa(r.Count), "first_seen": r.FirstSeen,
			"last_seen": r.LastSeen, "last_tls_at": r.LastTLSAt})
	}
	if !hostile {
		t.Errorf("the hostile domain is not shown as text among the downgrades: %+v", dg)
	}
	ov := d.Tables["overrides"]
	if len(ov) != len(j.Overrides.Rows) {
		t.Errorf("overrides: %d rows, JSON %d", len(ov), len(j.Overrides.Rows))
	}
	for i, r := range j.Overrides.Rows {
		if i >= len(ov) {
			break
		}
		checkDOMRow(t, "override", ov[i], r.Key, map[string]string{"in_force_since": r.InForceSince, "sent": itoa(r.Sent),
			"encrypted": itoa(r.Encrypted), "plaintext": itoa(r.Plaintext), "deferred": itoa(r.Deferred),
			"tls_deferred": itoa(r.TLSDeferred), "bounced": itoa(r.Bounced)})
	}
	checkPolicies(t, d, j)
}

// checkPolicies compares the published-policies section with report
// policies --format json.
func checkPolicies(t *testing.T, d domView, j jsonReport) {
	t.Helper()
	pol := d.Tables["policies"]
	if len(pol) != len(j.Policies.Rows) || len(j.Policies.Rows) != 2 {
		t.Errorf("policies: %d rows, JSON %d (want 2)", len(pol), len(j.Policies.Rows))
	}
	for i, r := range j.Policies.Rows {
		if i >= len(pol) {
			break
		}
		checkDOMRow(t, "policy", pol[i], r.Domain, map[string]string{"deliveries": itoa(r.Deliveries), "would_fail": itoa(r.WouldFail)})
	}
	if d.PolicyW != len(j.Policies.Warnings) || d.PolicyW == 0 {
		t.Errorf("policy warnings: page %d, JSON %d %q", d.PolicyW, len(j.Policies.Warnings), j.Policies.Warnings)
	}
}

func checkDOMRow(t *testing.T, what string, got domRow, key string, fields map[string]string) {
	t.Helper()
	if got.Key != key || got.Head != key {
		t.Errorf("%s row: key %q, heading %q; JSON %q", what, got.Key, got.Head, key)
	}
	if len(got.Fields) != len(fields) {
		t.Errorf("%s %s: page fields %v, JSON %v", what, key, got.Fields, fields)
	}
	for f, v := range fields {
		if strings.HasSuffix(f, "_seen") || strings.HasSuffix(f, "_at") || strings.HasSuffix(f, "_since") {
			if got.Fields[f] != v {
				t.Errorf("%s %s %s = %q, JSON %q", what, key, f, got.Fields[f], v)
			}
			continue
		}
		sameNumber(t, what+" "+key+" "+f, got.Fields[f], v)
	}
}

// sameNumber compares a number as the page shows it ("1,234", "97.34%")
// with the JSON's ("1234", "0.9734").
func sameNumber(t *testing.T, what, page, js string) {
	t.Helper()
	want, err := strconv.ParseFloat(js, 64)
	if err != nil {
		t.Errorf("%s: JSON value %q is not a number", what, js)
		return
	}
	s := strings.ReplaceAll(page, ",", "")
	scale := 1.0
	if strings.HasSuffix(s, "%") {
		s, scale = strings.TrimSuffix(s, "%"), 100
	}
	got, err := strconv.ParseFloat(s, 64)
	if err != nil || math.Abs(got/scale-want) > 1e-9 {
		t.Errorf("%s: page shows %q, JSON %s", what, page, js)
	}
}
