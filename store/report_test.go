package store

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

var testDomains = []string{"example.com", "a.example.com", "b.a.example.com", "xexample.com", "x-example.com", "other.org", "mail.other.org", "plain.net"}

// randomDeliveries makes n deliveries with random outcomes at random
// microsecond times in [start, start+span).
func randomDeliveries(seed int64, n int, start time.Time, span time.Duration) []delivery.Delivery {
	r := rand.New(rand.NewSource(seed))
	pick := func(xs ...string) string { return xs[r.Intn(len(xs))] }
	out := make([]delivery.Delivery, n)
	for i := range out {
		dom := testDomains[r.Intn(len(testDomains))]
		d := delivery.Delivery{
			Time:    start.Add(time.Duration(r.Int63n(int64(span/time.Microsecond))) * time.Microsecond),
			LogHost: "mail", Process: "postfix/smtp", PID: r.Intn(1000),
			QueueID: fmt.Sprintf("R%d", i), Recipient: "u@" + dom, Domain: dom,
			Key: keyOf(int(seed)*1_000_000 + i),
		}
		switch x := r.Intn(10); {
		case x < 4:
			d.Relay = "mx1." + dom + "[192.0.2.1]:25"
		case x < 6:
			d.Relay = "MX2." + strings.ToUpper(dom) + "[2001:db8::1]:25"
		case x < 9:
			d.Relay = "smarthost.example[198.51.100.7]:587"
		default:
			d.Relay = "none"
		}
		switch x := r.Intn(20); {
		case x < 14:
			d.Status = delivery.Sent
		case x < 17:
			d.Status = delivery.Deferred
		case x < 19:
			d.Status = delivery.Bounced
		default:
			d.Status = delivery.Expired
		}
		switch x := r.Intn(20); {
		case x < 3: // unknown
		case x < 8:
			d.TLS = bptr(false)
			d.Fallback = d.Status == delivery.Sent && r.Intn(3) == 0
		default:
			d.TLS = bptr(true)
			d.TLSTrust = delivery.Trust(pick("", "anonymous", "untrusted", "trusted", "verified"))
			d.TLSProtocol = pick("TLSv1.2", "TLSv1.3", "")
			d.TLSCipher = pick("TLS_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384")
		}
		if d.Status != delivery.Sent && r.Intn(3) == 0 {
			d.TLSFailure = true
		}
		// Without drawing from r, so the other fields stay as they were.
		if i%7 == 3 { // a content filter's hop
			d.Internal = true
			d.Relay = "127.0.0.1[127.0.0.1]:10024"
		}
		if i%5 == 1 {
			d.TLSFeature = "may:none"
		}
		out[i] = d
	}
	return out
}

// ---- independent expectations ----

func inWindow(d delivery.Delivery, since, until time.Time) bool {
	return (since.IsZero() || !d.Time.Before(since)) && (until.IsZero() || d.Time.Before(until))
}

func domainMatcher(f string) func(string) bool {
	switch {
	case f == "":
		return func(string) bool { return true }
	case strings.HasPrefix(f, "*."):
		p := f[2:]
		return func(d string) bool { return d == p || strings.HasSuffix(d, "."+p) }
	case strings.HasPrefix(f, "."):
		return func(d string) bool { return strings.HasSuffix(d, f) }
	}
	return func(d string) bool { return d == f }
}

func selectDs(ds []delivery.Delivery, w Window) []delivery.Delivery {
	m := domainMatcher(w.Domain)
	var out []delivery.Delivery
	for _, d := range ds {
		if inWindow(d, w.Since, w.Until) && m(d.Domain) && (w.IncludeInternal || !d.Internal) {
			out = append(out, d)
		}
	}
	return out
}

func isEnc(d delivery.Delivery) bool   { return d.TLS != nil && *d.TLS }
func isPlain(d delivery.Delivery) bool { return d.TLS != nil && !*d.TLS }

func expectSummary(ds []delivery.Delivery, w Window) Summary {
	s := Summary{ByTrust: map[string]int64{}, ByProtocol: map[string]int64{}}
	type flags struct{ plain, notEnc bool }
	doms := map[string]*flags{}
	for _, d := range selectDs(ds, w) {
		switch d.Status {
		case delivery.Sent:
			s.Deliveries++
			f := doms[d.Domain]
			if f == nil {
				f = &flags{}
				doms[d.Domain] = f
			}
			switch {
			case isEnc(d):
				s.Encrypted++
				tr, pr := d.TLSTrust, d.TLSProtocol
				if tr == "" {
					tr = "unknown"
				}
				if pr == "" {
					pr = "unknown"
				}
				s.ByTrust[string(tr)]++
				s.ByProtocol[pr]++
			case isPlain(d):
				s.Plaintext++
				f.plain, f.notEnc = true, true
				if !d.Fallback {
					s.PlaintextNoStartTLS++
				}
			default:
				s.Unknown++
				f.notEnc = true
			}
			if d.Fallback {
				s.Fallback++
			}
		case delivery.Deferred:
			s.Deferred++
			if d.TLSFailure {
				s.TLSDeferred++
			}
		case delivery.Bounced:
			s.Bounced++
		case delivery.Expired:
			s.Expired++
		}
	}
	if s.Encrypted+s.Plaintext > 0 {
		s.Coverage = float64(s.Encrypted) / float64(s.Encrypted+s.Plaintext)
	}
	for _, f := range doms {
		s.Domains++
		if f.plain {
			s.DomainsAnyPlaintext++
		}
		if !f.notEnc {
			s.DomainsAllTLS++
		}
	}
	all := w
	all.IncludeInternal = true
	for _, d := range selectDs(ds, all) {
		if d.Internal {
			s.Internal++
		}
	}
	return s
}

func relayHostOf(relay string) string {
	h := strings.ToLower(relay)
	if i := strings.Index(h, "["); i >= 0 {
		h = h[:i]
	}
	return h
}

func expectReport(ds []delivery.Delivery, w Window, by string, top int) []Row {
	rows := map[string]*Row{}
	for _, d := range selectDs(ds, w) {
		if by != "status" && d.Status != delivery.Sent {
			continue
		}
		var k string
		switch by {
		case "domain":
			k = d.Domain
		case "relay":
			k = relayHostOf(d.Relay)
		case "protocol":
			k = d.TLSProtocol
		case "cipher":
			k = d.TLSCipher
		case "trust":
			k = string(d.TLSTrust)
		case "status":
			k = string(d.Status)
		case "day":
			k = d.Time.UTC().Format("2006-01-02")
		case "hour":
			k = d.Time.UTC().Truncate(time.Hour).Format(time.RFC3339)
		case "host":
			// Written without SetHost: as the machine's host name.
			if k = d.Host; k == "" {
				k, _ = DefaultHost()
			}
		case "policy":
			// These fixtures have no override and no answer log: every
			// delivery is default. The join itself is tested on imported
			// logs in cmd/mailtls (TestReportByPolicy).
			k = "default"
		}
		if k == "" {
			k = "none"
		}
		r := rows[k]
		if r == nil {
			r = &Row{Key: k}
			rows[k] = r
		}
		r.Deliveries++
		if isEnc(d) {
			r.Encrypted++
		} else if isPlain(d) {
			r.Plaintext++
		}
	}
	var out []Row
	for _, r := range rows {
		if r.Encrypted+r.Plaintext > 0 {
			r.Coverage = float64(r.Encrypted) / float64(r.Encrypted+r.Plaintext)
		}
		out = append(out, *r)
	}
	if by == "day" || by == "hour" {
		sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
		if top > 0 && len(out) > top {
			out = out[len(out)-top:]
		}
		return out
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Deliveries != out[j].Deliveries {
			return out[i].Deliveries > out[j].Deliveries
		}
		return out[i].Key < out[j].Key
	})
	if top > 0 && len(out) > top {
		out = out[:top]
	}
	return out
}

// ---- fixtures ----

// fixture stores random deliveries over the 10 days before t0, in several
// batches and out of time order.
func fixture(t *testing.T) (*Store, []delivery.Delivery) {
	t.Helper()
	s, _ := openTest(t)
	ds := randomDeliveries(7, 3000, t0.Add(-10*24*time.Hour), 10*24*time.Hour)
	for i := 0; i < len(ds); i += 700 {
		if _, err := s.AddDeliveries(context.Background(), ds[i:min(i+700, len(ds))]); err != nil {
			t.Fatal(err)
		}
	}
	return s, ds
}

func testWindows() []Window {
	day := t0.Truncate(24 * time.Hour)
	ws := []Window{
		{},
		{Since: t0.Add(-3*24*time.Hour + 7*time.Hour + 13*time.Minute), Until: t0.Add(-24*time.Hour + 5*time.Hour + 17*time.Microsecond)},
		{Since: day.Add(-4 * 24 * time.Hour), Until: day.Add(-24 * time.Hour)},                                                           // aligned on days
		{Since: day.Add(-2*24*time.Hour + time.Hour), Until: day.Add(-2*24*time.Hour + 5*time.Hour + 30*time.Minute)},                    // inside one day
		{Since: day.Add(-5*24*time.Hour + 3*time.Hour + 10*time.Minute), Until: day.Add(-5*24*time.Hour + 3*time.Hour + 50*time.Minute)}, // inside one hour
		{Since: t0.Add(-7*24*time.Hour + 1234567*time.Microsecond)},
		{Until: t0.Add(-6*24*time.Hour - 42*time.Minute)},
		{Since: t0.Add(-2 * 24 * time.Hour), Until: t0.Add(-2 * 24 * time.Hour)},        // empty
		{Since: t0.Add(-2 * 24 * time.Hour), Until: t0.Add(-3 * 24 * time.Hour)},        // inverted
		{Since: t0.Add(-30 * 24 * time.Hour), Until: t0.Add(-20 * 24 * time.Hour)},      // no data
		{Since: t0.Add(-9*24*time.Hour - 30*time.Minute), Until: t0.Add(3 * time.Hour)}, // wider than the data
	}
	return ws
}

var testFilters = []string{"", "example.com", "*.example.com", ".example.com", "other.org", "nosuch.example"}

func TestSummaryMatchesRawRows(t *testing.T) {
	ctx := context.Background()
	s, ds := fixture(t)
	checkRollups(t, s)
	for _, w := range testWindows() {
		for _, f := range testFilters {
			for _, internal := range []bool{false, true} {
				w.Domain, w.IncludeInternal = f, internal
				got, err := s.Summary(ctx, w)
				if err != nil {
					t.Fatal(err)
				}
				want := expectSummary(ds, w)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("Summary(%v..%v %q, internal %v):\n got %+v\nwant %+v", w.Since, w.Until, w.Domain, internal, got, want)
				}
			}
		}
	}
	if _, err := s.Summary(ctx, Window{Domain: "bad domain"}); err == nil {
		t.Error("bad domain filter accepted")
	}
}

func TestSummaryIndexPaths(t *testing.T) {
	// The per-domain counts switch access path with the window's share of
	// the data; both must agree with the raw rows.
	ctx := context.Background()
	s, ds := fixture(t)
	day := t0.Truncate(24 * time.Hour)
	for _, tc := range []struct {
		w    Window
		hint string
	}{
		{Window{Since: day.Add(-2*24*time.Hour + time.Minute), Until: t0}, "day"},  // 1 whole day of 11: day-range scan
		{Window{Since: day.Add(-9*24*time.Hour + time.Minute), Until: t0}, "+day"}, // 8 whole days of 11: primary key walk
	} {
		w := tc.w
		p, _ := newPlan(w)
		err := s.read(ctx, func(tx *sql.Tx) error {
			if h := rollupDayColumn(ctx, tx, p, 4); h != tc.hint {
				t.Errorf("window %v..%v: day column %q, want %q", w.Since, w.Until, h, tc.hint)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Summary(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		if want := expectSummary(ds, w); !reflect.DeepEqual(got, want) {
			t.Errorf("Summary(%v..%v):\n got %+v\nwant %+v", w.Since, w.Until, got, want)
		}
	}
}

func TestReportByMatchesRawRows(t *testing.T) {
	ctx := context.Background()
	s, ds := fixture(t)
	for _, by := range ReportDimensions {
		for wi, w := range testWindows() {
			for fi, f := range testFilters {
				w.Domain = f
				w.IncludeInternal = fi%2 == 1 // half the cases count internal hops
				tops := []int{0}
				if wi == 1 { // top only changes the trimming; check it on one window
					tops = append(tops, 3)
				}
				for _, top := range tops {
					got, err := s.ReportBy(ctx, w, by, top)
					if err != nil {
						t.Fatal(err)
					}
					want := expectReport(ds, w, by, top)
					if len(got) == 0 && len(want) == 0 {
						continue
					}
					if !reflect.DeepEqual(got, want) {
						t.Errorf("ReportBy(%s, window %d %q, top %d):\n got %+v\nwant %+v", by, wi, f, top, got, want)
					}
				}
			}
		}
	}
	if _, err := s.ReportBy(ctx, Window{}, "weekday", 0); err == nil {
		t.Error("unknown dimension accepted")
	}
}

func TestOverrideActivityMatchesRawRows(t *testing.T) {
	ctx := context.Background()
	s, ds := fixture(t)
	keys := []string{"example.com", ".example.com", "[smarthost.example]:587", "[smarthost.example]", "[MX1.other.org]", "other.org", "nosuch.example"}
	match := map[string]func(delivery.Delivery) bool{
		"example.com":  func(d delivery.Delivery) bool { return d.Domain == "example.com" },
		".example.com": func(d delivery.Delivery) bool { return strings.HasSuffix(d.Domain, ".example.com") },
		"[smarthost.example]:587": func(d delivery.Delivery) bool {
			return strings.HasPrefix(d.Relay, "smarthost.example[") && strings.HasSuffix(d.Relay, "]:587")
		},
		"[smarthost.example]": func(d delivery.Delivery) bool {
			return strings.HasPrefix(d.Relay, "smarthost.example[") && strings.HasSuffix(d.Relay, "]:25")
		},
		"[MX1.other.org]": func(d delivery.Delivery) bool {
			return strings.HasPrefix(d.Relay, "mx1.other.org[") && strings.HasSuffix(d.Relay, "]:25")
		},
		"other.org":      func(d delivery.Delivery) bool { return d.Domain == "other.org" },
		"nosuch.example": func(delivery.Delivery) bool { return false },
	}
	for wi, w := range testWindows() {
		for _, f := range []string{"", "*.other.org"} {
			w.Domain = f
			got, err := s.OverrideActivity(ctx, w, keys)
			if err != nil {
				t.Fatal(err)
			}
			var want []OverrideStats
			for _, k := range keys {
				st := OverrideStats{Key: k}
				for _, d := range selectDs(ds, w) {
					if !match[k](d) {
						continue
					}
					switch d.Status {
					case delivery.Sent:
						st.Sent++
						if isEnc(d) {
							st.Encrypted++
						} else if isPlain(d) {
							st.Plaintext++
						}
					case delivery.Deferred:
						st.Deferred++
						if d.TLSFailure {
							st.TLSDeferred++
						}
					case delivery.Bounced:
						st.Bounced++
					case delivery.Expired:
						st.Expired++
					}
				}
				want = append(want, st)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("OverrideActivity(window %d %q):\n got %+v\nwant %+v", wi, f, got, want)
			}
		}
	}
	if _, err := s.OverrideActivity(ctx, Window{}, []string{"*.example.com"}); err == nil {
		t.Error("wildcard key accepted")
	}
}

func TestDryRunMatchesRawRows(t *testing.T) {
	ctx := context.Background()
	s, ds := fixture(t)
	s.now = func() time.Time { return t0.Add(-24 * time.Hour) } // deliveries after "now" are ignored
	since := t0.Add(-5*24*time.Hour - 3*time.Hour)
	for _, key := range []string{"example.com", ".example.com", "[smarthost.example]:587"} {
		var want DryRunResult
		for _, d := range ds {
			if d.Time.Before(since) || !d.Time.Before(t0.Add(-24*time.Hour)) || d.Status != delivery.Sent || d.Internal {
				continue
			}
			ok := map[string]bool{
				"example.com":             d.Domain == "example.com",
				".example.com":            strings.HasSuffix(d.Domain, ".example.com"),
				"[smarthost.example]:587": strings.HasPrefix(d.Relay, "smarthost.example["),
			}[key]
			if !ok {
				continue
			}
			want.Deliveries++
			if isPlain(d) {
				want.Plaintext++
			}
			if isEnc(d) && (d.TLSTrust == "anonymous" || d.TLSTrust == "untrusted") {
				want.Unverified++
			}
		}
		if want.Plaintext == 0 || want.Unverified == 0 {
			t.Fatalf("fixture too thin for %s: %+v", key, want)
		}
		for level, wd := range map[string]int64{
			"may": 0, "none": 0, "dane": 0,
			"encrypt": want.Plaintext, "encrypt protocols=>=TLSv1.2": want.Plaintext,
			"verify": want.Plaintext + want.Unverified, "secure match=nexthop": want.Plaintext + want.Unverified,
		} {
			got, err := s.DryRun(ctx, key, level, since)
			if err != nil {
				t.Fatal(err)
			}
			w := want
			w.WouldDefer = wd
			if got != w {
				t.Errorf("DryRun(%s, %s): %+v, want %+v", key, level, got, w)
			}
		}
	}
	if _, err := s.DryRun(ctx, "example.com", "sometimes", since); err == nil {
		t.Error("unknown level accepted")
	}
	if _, err := s.DryRun(ctx, "exa mple.com", "encrypt", since); err == nil {
		t.Error("bad key accepted")
	}
}

func TestSplitWindowCoversExactly(t *testing.T) {
	unit := int64(10)
	for lo := int64(-25); lo <= 25; lo++ {
		for hi := lo - 2; hi <= 35; hi++ {
			sp := splitWindow(lo, hi, unit)
			covered := map[int64]int{}
			for b := sp.b0; b < sp.b1; b++ {
				for x := b * unit; x < (b+1)*unit; x++ {
					covered[x]++
				}
			}
			for _, e := range sp.edges {
				for x := e[0]; x < e[1]; x++ {
					covered[x]++
				}
			}
			for x := int64(-40); x < 50; x++ {
				want := 0
				if x >= lo && x < hi {
					want = 1
				}
				if covered[x] != want {
					t.Fatalf("split(%d,%d): %d covered %d times", lo, hi, x, covered[x])
				}
			}
		}
	}
}
