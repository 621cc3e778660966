package store

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// builder makes deliveries with unique keys.
type builder struct{ n int }

func (b *builder) d(at time.Time, domain string, status delivery.Status, tls *bool, trust delivery.Trust) delivery.Delivery {
	b.n++
	d := testDelivery(b.n+500_000, at, domain)
	d.Status, d.TLS, d.TLSTrust = status, tls, trust
	if tls == nil || !*tls {
		d.TLSTrust, d.TLSProtocol, d.TLSCipher = "", "", ""
	}
	return d
}

func TestDowngrades(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	var b builder
	day := func(n int, h int) time.Time {
		return t0.Add(time.Duration(n)*24*time.Hour + time.Duration(h)*time.Hour)
	}
	var ds []delivery.Delivery
	// dg.example: TLS for days, then plaintext.
	for i := -10; i < -3; i++ {
		ds = append(ds, b.d(day(i, 1), "dg.example", delivery.Sent, bptr(true), "verified"))
	}
	lastTLS := b.d(day(-3, 2), "dg.example", delivery.Sent, bptr(true), "trusted")
	lastTLS.TLSProtocol, lastTLS.TLSCipher = "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"
	ds = append(ds, lastTLS)
	ds = append(ds,
		b.d(day(-2, 3), "dg.example", delivery.Sent, bptr(false), ""),
		b.d(day(-1, 4), "dg.example", delivery.Sent, bptr(false), ""),
		b.d(day(-1, 5), "dg.example", delivery.Deferred, bptr(false), ""), // deferred plaintext: not counted
		b.d(day(0, -1), "dg.example", delivery.Sent, bptr(false), ""),
	)
	// plain.example: always plaintext.
	for i := -10; i < 0; i++ {
		ds = append(ds, b.d(day(i, 1), "plain.example", delivery.Sent, bptr(false), ""))
	}
	// fail.example: TLS, then a TLS failure deferral.
	ds = append(ds, b.d(day(-5, 1), "fail.example", delivery.Sent, bptr(true), "trusted"))
	f := b.d(day(-1, 1), "fail.example", delivery.Deferred, nil, "")
	f.TLSFailure = true
	ds = append(ds, f)
	// late.example: plaintext first, TLS later, nothing bad after.
	ds = append(ds,
		b.d(day(-9, 1), "late.example", delivery.Sent, bptr(false), ""),
		b.d(day(-8, 1), "late.example", delivery.Sent, bptr(true), "trusted"),
		b.d(day(-1, 1), "late.example", delivery.Sent, bptr(true), "trusted"),
	)
	// old.example: downgrade long before the window.
	ds = append(ds,
		b.d(day(-20, 1), "old.example", delivery.Sent, bptr(true), "trusted"),
		b.d(day(-19, 1), "old.example", delivery.Sent, bptr(false), ""),
	)
	// unknown.example: TLS then unknown state: not a downgrade.
	ds = append(ds,
		b.d(day(-5, 1), "unknown.example", delivery.Sent, bptr(true), "trusted"),
		b.d(day(-1, 1), "unknown.example", delivery.Sent, nil, ""),
	)
	if _, err := s.AddDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}

	w := Window{Since: day(-7, 0).Add(30 * time.Minute), Until: t0}
	got, err := s.Downgrades(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	want := []Downgrade{
		{Domain: "dg.example", FirstSeen: day(-2, 3), LastSeen: day(0, -1), Count: 3, Plaintext: 3,
			LastTLSAt: day(-3, 2), LastTLSTrust: "trusted", LastTLSProtocol: "TLSv1.2", LastTLSCipher: "ECDHE-RSA-AES128-GCM-SHA256"},
		{Domain: "fail.example", FirstSeen: day(-1, 1), LastSeen: day(-1, 1), Count: 1, TLSFailures: 1,
			LastTLSAt: day(-5, 1), LastTLSTrust: "trusted", LastTLSProtocol: "TLSv1.3", LastTLSCipher: "TLS_AES_256_GCM_SHA384"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Downgrades:\n got %+v\nwant %+v", got, want)
	}

	// A window that starts after the first plaintext still counts only what
	// is inside it; the TLS history before the window still qualifies.
	got, err = s.Downgrades(ctx, Window{Since: day(-1, 0), Until: t0, Domain: "dg.example"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Count != 2 || !got[0].FirstSeen.Equal(day(-1, 4)) || !got[0].LastTLSAt.Equal(day(-3, 2)) {
		t.Errorf("Downgrades(last day, dg.example): %+v", got)
	}
	got, err = s.Downgrades(ctx, Window{Since: day(-1, 0), Until: t0, Domain: "plain.example"})
	if err != nil || len(got) != 0 {
		t.Errorf("Downgrades(plain.example) = %+v, %v; want none", got, err)
	}
	got, err = s.Downgrades(ctx, Window{Since: day(-30, 0), Until: day(-15, 0)})
	if err != nil || len(got) != 1 || got[0].Domain != "old.example" {
		t.Errorf("Downgrades(old window) = %+v, %v; want old.example", got, err)
	}
}

// The downgrade rule checked against an independent computation over
// random data.
// oldBadIndex is deliveries_bad as databases that held deliveries before
// schema 3 keep it (see rekeyBadIndex).
const oldBadIndex = `DROP INDEX deliveries_bad;
CREATE INDEX deliveries_bad ON deliveries(domain, time) WHERE (status = 'sent' AND tls = 0) OR tls_failure = 1`

func TestDowngradesMatchRawRows(t *testing.T) {
	s, ds := fixture(t)
	// A domain that got plaintext before its first encrypted delivery
	// (not a downgrade) and after it (one).
	var late []delivery.Delivery
	for i, back := range []time.Duration{200, 150, 100, 60, 30, 5} {
		d := testDelivery(900_000+i, t0.Add(-back*time.Hour), "late-tls.example")
		if back != 100 {
			d.TLS, d.TLSTrust, d.TLSProtocol, d.TLSCipher = bptr(false), "", "", ""
		}
		late = append(late, d)
	}
	if _, err := s.AddDeliveries(context.Background(), late); err != nil {
		t.Fatal(err)
	}
	ds = append(ds, late...)
	for _, layout := range []string{"new", "old"} {
		if layout == "old" {
			w, _ := s.writer()
			if _, err := w.Exec(oldBadIndex); err != nil {
				t.Fatal(err)
			}
		}
		for _, internal := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/internal=%v", layout, internal), func(t *testing.T) { checkDowngrades(t, s, ds, internal) })
		}
	}
}

// checkDowngrades compares Downgrades over testWindows with what the raw
// deliveries ds say.
func checkDowngrades(t *testing.T, s *Store, ds []delivery.Delivery, internal bool) {
	ctx := context.Background()
	for wi, w := range testWindows() {
		w.IncludeInternal = internal
		got, err := s.Downgrades(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		firstEnc := map[string]time.Time{}
		for _, d := range ds {
			if d.Status == delivery.Sent && isEnc(d) && (internal || !d.Internal) {
				if ft, ok := firstEnc[d.Domain]; !ok || d.Time.Before(ft) {
					firstEnc[d.Domain] = d.Time
				}
			}
		}
		byDom := map[string]*Downgrade{}
		for _, d := range selectDs(ds, w) {
			bad := (d.Status == delivery.Sent && isPlain(d)) || d.TLSFailure
			ft, ok := firstEnc[d.Domain]
			if !bad || !ok || !d.Time.After(ft) {
				continue
			}
			dg := byDom[d.Domain]
			if dg == nil {
				dg = &Downgrade{Domain: d.Domain, FirstSeen: d.Time.UTC(), LastSeen: d.Time.UTC()}
				byDom[d.Domain] = dg
			}
			dg.Count++
			if d.Status == delivery.Sent && isPlain(d) {
				dg.Plaintext++
			} else {
				dg.TLSFailures++
			}
			if d.Time.Before(dg.FirstSeen) {
				dg.FirstSeen = d.Time.UTC()
			}
			if d.Time.After(dg.LastSeen) {
				dg.LastSeen = d.Time.UTC()
			}
		}
		var want []Downgrade
		for _, dg := range byDom {
			var last delivery.Delivery
			for _, d := range ds {
				if d.Domain == dg.Domain && d.Status == delivery.Sent && isEnc(d) && (internal || !d.Internal) && d.Time.Before(dg.FirstSeen) && d.Time.After(last.Time) {
					last = d
				}
			}
			dg.LastTLSAt, dg.LastTLSTrust, dg.LastTLSProtocol, dg.LastTLSCipher = last.Time.UTC(), string(last.TLSTrust), last.TLSProtocol, last.TLSCipher
			want = append(want, *dg)
		}
		sort.Slice(want, func(i, j int) bool {
			if !want[i].LastSeen.Equal(want[j].LastSeen) {
				return want[i].LastSeen.After(want[j].LastSeen)
			}
			return want[i].Domain < want[j].Domain
		})
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Downgrades(window %d):\n got %+v\nwant %+v", wi, got, want)
		}
	}
}

func TestSuggest(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	var b builder
	now := t0 // 12:00 UTC
	at := func(daysAgo, h int) time.Time {
		return now.Truncate(24 * time.Hour).Add(time.Duration(-daysAgo)*24*time.Hour + time.Duration(h)*time.Hour)
	}
	var ds []delivery.Delivery
	add := func(dom string, n, days int, mod func(i int, d *delivery.Delivery)) {
		for i := 0; i < n; i++ {
			d := b.d(at(1+i%days, 3+i%5), dom, delivery.Sent, bptr(true), "verified")
			if mod != nil {
				mod(i, &d)
			}
			ds = append(ds, d)
		}
	}
	add("good.example", 6, 3, func(i int, d *delivery.Delivery) {
		if i == 0 {
			d.TLSTrust = "trusted"
		}
		if i == 5 {
			d.Time = at(0, 2) // today, before now: read from raw rows
		}
	})
	ds = append(ds, b.d(now.Add(time.Hour), "good.example", delivery.Sent, bptr(false), "")) // after now: ignored
	add("anon.example", 5, 3, func(i int, d *delivery.Delivery) {
		if i == 2 {
			d.TLSTrust = "anonymous"
		}
	})
	add("oneplain.example", 10, 5, func(i int, d *delivery.Delivery) {
		if i == 7 {
			d.TLS, d.TLSTrust = bptr(false), ""
		}
	})
	add("unknown.example", 10, 5, func(i int, d *delivery.Delivery) {
		if i == 7 {
			d.TLS, d.TLSTrust = nil, ""
		}
	})
	add("few.example", 2, 2, nil)
	add("oneday.example", 8, 1, nil)
	add("tlsfail.example", 8, 4, nil)
	tf := b.d(at(2, 1), "tlsfail.example", delivery.Deferred, nil, "")
	tf.TLSFailure = true
	ds = append(ds, tf)
	// A plain deferral (no TLS failure) does not disqualify.
	ds = append(ds, b.d(at(2, 1), "anon.example", delivery.Deferred, nil, ""))
	// Nor does a content filter's plaintext hop, unless internal hops count.
	hop := b.d(at(2, 4), "good.example", delivery.Sent, bptr(false), "")
	hop.Relay, hop.Internal = "127.0.0.1[127.0.0.1]:10024", true
	ds = append(ds, hop)
	if _, err := s.AddDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}

	got, err := s.Suggest(ctx, 3, 2, now, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []Suggestion{
		{Domain: "good.example", Level: "verify", Deliveries: 6, Days: 4, FirstSeen: at(3, 5), LastSeen: at(0, 2)},
		{Domain: "anon.example", Level: "encrypt", Deliveries: 5, Days: 3, FirstSeen: at(3, 5), LastSeen: at(1, 6)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Suggest:\n got %+v\nwant %+v", got, want)
	}
	if got, err := s.Suggest(ctx, 3, 2, now, true); err != nil || len(got) != 1 || got[0].Domain != "anon.example" {
		t.Errorf("Suggest with internal hops: %+v, %v; want anon.example only (good.example had a plaintext hop)", got, err)
	}
	got, _ = s.Suggest(ctx, 2, 1, now, false)
	names := map[string]bool{}
	for _, sg := range got {
		names[sg.Domain] = true
	}
	for _, d := range []string{"few.example", "oneday.example"} {
		if !names[d] {
			t.Errorf("Suggest(2, 1) lacks %s: %+v", d, got)
		}
	}
	for _, d := range []string{"oneplain.example", "unknown.example", "tlsfail.example"} {
		if names[d] {
			t.Errorf("Suggest(2, 1) has %s", d)
		}
	}
	if _, err := s.Suggest(ctx, 0, 1, now, false); err == nil {
		t.Error("minDeliveries 0 accepted")
	}
}
