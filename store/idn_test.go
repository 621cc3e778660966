package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// TestDomainFilterIDN: a domain filter in U-labels or in A-labels finds
// the deliveries of the domain logged under either spelling (Postfix logs
// an SMTPUTF8 recipient's domain in U-labels), from the raw rows and from
// the rollups alike, and only those; a bad filter gets one line naming what
// is wrong. It runs on both engines (TestOnPostgres).
func TestDomainFilterIDN(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	day := t0.Truncate(24 * time.Hour).Add(-48 * time.Hour)
	domains := []string{
		"bücher.example", "xn--bcher-kva.example", // the domain, both spellings
		"mx.bücher.example", "mx.xn--bcher-kva.example", // subdomains, both spellings
		"bücherei.example", "xn--bcherei-n2a.example", "bucher.example", "example", // near misses
	}
	var ds []delivery.Delivery
	for i := range 3 * len(domains) {
		// Two whole days (rollups) and a partial third (raw rows).
		at := day.Add(time.Duration(i) * 3 * time.Hour)
		ds = append(ds, testDelivery(i, at, domains[i%len(domains)]))
	}
	if _, err := s.CommitBatch(ctx, "/var/log/mail.log", ds, []byte("cp")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		filter string
		want   []string // domains matched
	}{
		{"bücher.example", domains[:2]},
		{"BÜCHER.Example.", domains[:2]},
		{"xn--bcher-kva.example", domains[:2]},
		{"*.bücher.example", domains[:4]},
		{"*.xn--bcher-kva.example", domains[:4]},
		{".bücher.example", domains[2:4]},
		{"mx.bücher.example", domains[2:4]},
		{"bücherei.example", domains[4:6]},
	} {
		want := map[string]bool{}
		for _, d := range c.want {
			want[d] = true
		}
		var n int64
		for _, d := range ds {
			if want[d.Domain] {
				n++
			}
		}
		got := allDeliveries(t, s, Filter{Domain: c.filter})
		for _, d := range got {
			if !want[d.Domain] {
				t.Errorf("Deliveries(%q) gave one to %q", c.filter, d.Domain)
			}
		}
		if int64(len(got)) != n {
			t.Errorf("Deliveries(%q): %d, want %d", c.filter, len(got), n)
		}
		for _, w := range []Window{
			{Domain: c.filter}, // whole days: rollups, and the raw rows of the last
			{Domain: c.filter, Since: day, Until: day.Add(48 * time.Hour)}, // rollups only
			{Domain: c.filter, Since: day.Add(5 * time.Hour), Until: day.Add(50 * time.Hour)},
		} {
			var wn int64
			for _, d := range ds {
				if want[d.Domain] && !d.Time.Before(w.Since) && (w.Until.IsZero() || d.Time.Before(w.Until)) {
					wn++
				}
			}
			sum, err := s.Summary(ctx, w)
			if err != nil {
				t.Fatalf("Summary(%q): %v", c.filter, err)
			}
			if sum.Deliveries != wn {
				t.Errorf("Summary(%q, %v..%v): %d deliveries, want %d", c.filter, w.Since, w.Until, sum.Deliveries, wn)
			}
		}
	}
	for _, c := range []struct{ filter, part string }{
		{"bü cher.example", "U+0020"},
		{"xn--zz.example", "punycode"},
		{"-bücher.example", "invalid label"},
		{"bücher..example", "empty label"},
		{"bücher.123", "all digits"},
	} {
		_, err := s.Summary(ctx, Window{Domain: c.filter})
		if err == nil || !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), c.part) ||
			!strings.Contains(err.Error(), "U-labels") || strings.Contains(err.Error(), "\n") {
			t.Errorf("Summary(domain %q) = %v; want one line wrapping ErrBadInput, naming %s and what is accepted", c.filter, err, c.part)
		}
	}
}
