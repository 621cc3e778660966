package report

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/internal/clip"
	"github.com/mailtls/mailtls/store"
)

// now is the clock of these tests.
var now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

const hostile = `"><script>alert(1)</script><img src=x onerror=alert(2)>.evil.example`

func tlsOf(b bool) *bool { return &b }

// testStore is a real store holding a few days of deliveries: TLS for
// days, then plaintext, to hostile and plain domains.
func testStore(t *testing.T) *store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var ds []delivery.Delivery
	add := func(at time.Time, domain, relay string, tls *bool) {
		d := delivery.Delivery{Time: at, QueueID: fmt.Sprintf("Q%06d", len(ds)), Recipient: "u@" + domain, Domain: domain,
			Relay: relay, Status: "sent", DSN: "2.0.0", TLS: tls, Key: fmt.Sprintf("%064x", len(ds)+1)}
		if tls != nil && *tls {
			d.TLSTrust, d.TLSProtocol, d.TLSCipher = "verified", "TLSv1.3", "TLS_AES_256_GCM_SHA384"
		}
		ds = append(ds, d)
	}
	for day := 6; day >= 1; day-- {
		at := now.Add(-time.Duration(day) * 24 * time.Hour)
		add(at, hostile, `mx<b>.evil.example[192.0.2.6]:25`, tlsOf(day > 3))
		add(at.Add(time.Minute), "ok.example", "mx.ok.example[192.0.2.7]:25", tlsOf(true))
		add(at.Add(2*time.Minute), "unknown.example", "mx.unknown.example[192.0.2.8]:25", nil)
	}
	if _, err := st.AddDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}
	return st
}

func render(t *testing.T, st *store.Store, w store.Window) []byte {
	t.Helper()
	d, err := Load(context.Background(), st, w)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteHTML(&b, d); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestHTMLLogDataIsInert: a domain and a relay with markup in them are
// text on the page, wherever they appear.
func TestHTMLLogDataIsInert(t *testing.T) {
	st := testStore(t)
	page := render(t, st, store.Window{Since: now.Add(-30 * 24 * time.Hour), Until: now})
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var texts int
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "img", "iframe", "object", "b":
				t.Errorf("page has a <%s> element", n.Data)
			}
			for _, a := range n.Attr {
				if strings.HasPrefix(a.Key, "on") {
					t.Errorf("<%s> has an event handler %s=%q", n.Data, a.Key, a.Val)
				}
			}
		}
		if n.Type == html.TextNode && strings.Contains(n.Data, hostile) {
			texts++
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	// The plaintext table and bar, and the downgrades table.
	if texts < 3 {
		t.Errorf("the hostile domain appears as text %d times, want at least 3", texts)
	}
	if !bytes.Contains(page, []byte(`data-key="&#34;&gt;&lt;script&gt;`)) {
		t.Errorf("the hostile domain is not escaped in the data-key attributes")
	}
}

func get(t *testing.T, h http.Handler, method, target string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	resp := rec.Result()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestHandler(t *testing.T) {
	st := testStore(t)
	h := Handler(st, func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)))

	// The default window and a chosen one: the page Load and WriteHTML
	// make for the same window, as the CLI writes it.
	for target, w := range map[string]store.Window{
		"/": {Since: now.Add(-7 * 24 * time.Hour), Until: now},
		"/?since=2026-11-23T00:00:00Z&until=3d&domain=%2A.evil.example": {
			Since: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), Until: now.Add(-3 * 24 * time.Hour), Domain: "*.evil.example"},
	} {
		resp, body := get(t, h, "GET", target)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
			resp.Header.Get("Content-Security-Policy") != ContentSecurityPolicy+"; frame-ancestors 'none'" {
			t.Errorf("GET %s: %s %v", target, resp.Status, resp.Header)
		}
		if want := string(render(t, st, w)); body != want {
			t.Errorf("GET %s: the page differs from WriteHTML's for %+v", target, w)
		}
	}
	resp, body := get(t, h, "HEAD", "/")
	if resp.StatusCode != 200 || body != "" {
		t.Errorf("HEAD /: %s, %d bytes", resp.Status, len(body))
	}

	for _, tc := range []struct {
		method, target string
		code           int
		reason         string
	}{
		{"GET", "/?since=yesterday", 400, `since: invalid time "yesterday"`},
		{"GET", "/?until=2026-13-01", 400, `until: invalid time "2026-13-01"`},
		{"GET", "/?since=1d&until=2d", 400, "is not before until"},
		{"GET", "/?domain=a..b", 400, `invalid domain "a..b"`},
		{"GET", "/?domain=%5B192.0.2.1%5D", 400, "invalid domain"},
		{"GET", "/?sinse=1d", 400, `unknown parameter "sinse" (want since, until or domain)`},
		{"GET", "/?since=1d&since=2d", 400, "parameter since given 2 times"},
		{"GET", "/?since=%zz", 400, "malformed query string"},
		{"GET", "/?since=" + strings.Repeat("x", 3000), 400, "too long"},
		{"GET", "/?since=%0A%3Cb%3Ex%0D", 400, `since: invalid time "\n<b>x\r"`},
		{"POST", "/", 405, "method POST not allowed (want GET or HEAD)"},
		{"GET", "/favicon.ico", 404, "not found"},
	} {
		resp, body := get(t, h, tc.method, tc.target)
		if resp.StatusCode != tc.code || !strings.Contains(body, tc.reason) || strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") {
			t.Errorf("%s %s: %s %.200q; want %d with one line containing %q", tc.method, tc.target, resp.Status, body, tc.code, tc.reason)
		}
		if tc.code != 404 && resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("%s %s: Content-Type %q", tc.method, tc.target, resp.Header.Get("Content-Type"))
		}
	}
	if resp, _ := get(t, h, "PUT", "/"); resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("405 without Allow: %v", resp.Header)
	}

	// A window the store refuses (within one day before the pruning
	// horizon) is bad input too.
	if _, err := st.Prune(context.Background(), now.Add(-2*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	resp, body = get(t, h, "GET", "/?since=2026-11-23T01:00:00Z&until=2026-11-23T05:00:00Z")
	if resp.StatusCode != 400 || !strings.Contains(body, "lies within one UTC day") || strings.Count(body, "\n") != 1 || strings.Contains(body, "store:") {
		t.Errorf("window inside a pruned day: %s %q", resp.Status, body)
	}
	resp, body = get(t, h, "GET", "/?since=2026-11-23T01:00:00Z")
	if resp.StatusCode != 200 || !strings.Contains(body, `id="pruned"`) || !strings.Contains(body, `data-since="2026-11-24T00:00:00Z"`) {
		t.Errorf("window from mid-day before the horizon: %s, pruned note %v", resp.Status, strings.Contains(body, `id="pruned"`))
	}
}

// TestDayChart: one point per day with mail, placed by date; a single
// day is still drawn; no day draws no point.
func TestDayChart(t *testing.T) {
	row := func(k string, sent, enc, plain int64) Row {
		return Row{Key: k, Deliveries: sent, Encrypted: enc, Plaintext: plain, Coverage: Coverage4(float64(enc) / float64(max(1, enc+plain)))}
	}
	c := newDayChart([]Row{row("2026-11-01", 10, 8, 1), row("2026-11-02", 4, 4, 0), row("2026-11-05", 5, 0, 5)})
	if len(c.Points) != 3 || len(c.Bands) != 3 {
		t.Fatalf("%d points, %d bands", len(c.Points), len(c.Bands))
	}
	// 2026-11-05 is 4 days after the first: the gap shows.
	if x0, x1, x2 := c.Points[0].X, c.Points[1].X, c.Points[2].X; x0 != c.X0 || x2 != c.X1 || math.Abs((x1-x0)*4-(x2-x0)) > 0.5 {
		t.Errorf("x positions %v %v %v, plot %v..%v", x0, x1, x2, c.X0, c.X1)
	}
	// Day 1: 80% encrypted; day 3: none.
	if y := c.Points[0].Y; math.Abs(y-(c.Y1-0.8*(c.Y1-c.Y0))) > 0.05 {
		t.Errorf("day 1 encrypted share at y %v", y)
	}
	if y := c.Points[2].Y; y != c.Y1 {
		t.Errorf("day 3 encrypted share at y %v, want the axis %v", y, c.Y1)
	}
	for _, b := range c.Bands {
		if b.Points != 3 || strings.Count(b.Line, ",") != 3 || strings.Count(b.Area, ",") != 6 || strings.Contains(b.Area, "NaN") {
			t.Errorf("band %s: %d points, line %q, area %q", b.Class, b.Points, b.Line, b.Area)
		}
	}
	// The three direct labels do not overlap.
	for i := range c.Bands {
		for j := range i {
			if d := c.Bands[i].LabelY - c.Bands[j].LabelY; d > -14 && d < 14 {
				t.Errorf("labels %s and %s %v apart", c.Bands[i].Label, c.Bands[j].Label, d)
			}
		}
	}
	one := newDayChart([]Row{row("2026-11-01", 3, 1, 1)})
	if len(one.Points) != 1 || strings.Count(one.Bands[0].Line, ",") != 2 {
		t.Errorf("one day: %d points, line %q", len(one.Points), one.Bands[0].Line)
	}
	if none := newDayChart(nil); len(none.Points) != 0 || len(none.Bands) != 0 || len(none.YTicks) != 5 {
		t.Errorf("no days: %+v", none)
	}
}

func TestParseWhen(t *testing.T) {
	for in, want := range map[string]time.Time{
		"24h": now.Add(-24 * time.Hour), "2w": now.Add(-14 * 24 * time.Hour), "1d12h": now.Add(-36 * time.Hour),
		"2026-11-01T10:00:00+02:00": time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC), "now": now,
	} {
		if got, err := ParseWhen(in, now); err != nil || !got.Equal(want) {
			t.Errorf("ParseWhen(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-3d", "1e9d", "100001d"} {
		if _, err := ParseWhen(bad, now); err == nil {
			t.Errorf("ParseWhen(%q) accepted", bad)
		}
	}
}

// TestDomainFilter: a filter in U-labels comes out in lowercase A-labels
// (the store matches deliveries logged in either), and a bad one gets one
// line naming what is wrong and what is accepted.
func TestDomainFilter(t *testing.T) {
	for in, want := range map[string]string{
		"bücher.example":             "xn--bcher-kva.example",
		"*.Bücher.Example.":          "*.xn--bcher-kva.example",
		"xn--bcher-kva.example":      "xn--bcher-kva.example",
		"例え.jp":                      "xn--r8jz45g.jp",
		" Example.COM ":              "example.com",
		"*.mx.xn--bcher-kva.example": "*.mx.xn--bcher-kva.example",
	} {
		if got, err := (Query{Domain: in}).DomainFilter("--"); err != nil || got != want {
			t.Errorf("DomainFilter(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, part := range map[string]string{
		"bü cher.example":  "U+0020",
		"xn--zz.example":   "punycode",
		"bücher..example":  "empty label",
		"[192.0.2.1]":      "'['",
		".bücher.example":  "empty label",
		"a\u200db.example": "invalid label",
	} {
		_, err := (Query{Domain: in}).DomainFilter("--")
		if err == nil || !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "--domain") || !strings.Contains(err.Error(), part) ||
			!strings.Contains(err.Error(), "U-labels") || strings.ContainsAny(err.Error(), "\n\r") {
			t.Errorf("DomainFilter(%q) = %v; want one line naming --domain, %s and what is accepted", in, err, part)
		}
	}
}

func FuzzParseURLQuery(f *testing.F) {
	for _, s := range []string{"", "since=7d", "since=2026-11-01&until=2026-11-02&domain=*.example.com", "domain=%5B1.2.3.4%5D",
		"since=1d&since=2d", "x=1", "since=%zz", "domain=a..b", "until=99999999999d", "since=%00", "domain=*.", "domain=.example.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		w, err := ParseURLQuery(raw, now)
		if err != nil {
			if strings.ContainsAny(clip.Line(err.Error(), 0), "\n\r") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if !w.Since.Before(w.Until) {
			t.Fatalf("%q: window %v..%v is empty", raw, w.Since, w.Until)
		}
		if w.Domain != "" && (strings.ContainsAny(w.Domain, "<>\"' \n") || strings.HasPrefix(w.Domain, ".")) {
			t.Fatalf("%q: domain filter %q", raw, w.Domain)
		}
	})
}
