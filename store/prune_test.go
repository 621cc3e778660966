package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

func TestFitWindow(t *testing.T) {
	h := time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)
	at := func(d, hh int) time.Time { return time.Date(2026, 3, d, hh, 0, 0, 0, time.UTC) }
	for _, c := range []struct {
		since, until, horizon, wantSince, wantUntil time.Time
	}{
		{at(1, 6), at(8, 6), time.Time{}, at(1, 6), at(8, 6)}, // no horizon
		{at(1, 6), at(8, 6), h, at(2, 0), at(8, 6)},           // start moves to the next midnight
		{at(1, 0), at(8, 6), h, at(1, 0), at(8, 6)},           // already a midnight
		{at(1, 6), at(3, 18), h, at(2, 0), at(3, 0)},          // both ends before the horizon
		{at(4, 6), at(4, 18), h, at(5, 0), at(4, 0)},          // within one day: empty
		{at(5, 6), at(6, 6), h, at(5, 6), at(6, 6)},           // after the horizon: unchanged
		{time.Time{}, at(3, 6), h, time.Time{}, at(3, 0)},     // unbounded start
		{at(4, 23), time.Time{}, h, at(5, 0), time.Time{}},    // unbounded end
		{at(4, 23), at(5, 1), h, at(5, 0), at(5, 1)},          // straddles the horizon
		{at(1, 6), at(8, 6), at(5, 0).Add(-time.Hour).Truncate(24 * time.Hour), at(2, 0), at(8, 6)},
	} {
		s, u := FitWindow(c.since, c.until, c.horizon)
		if !s.Equal(c.wantSince) || !u.Equal(c.wantUntil) {
			t.Errorf("FitWindow(%v, %v, %v) = %v, %v; want %v, %v", c.since, c.until, c.horizon, s, u, c.wantSince, c.wantUntil)
		}
	}
}

// TestPrune prunes the fixture and checks that raw rows before the horizon
// are gone, that reports still match every stored delivery (whole days
// before the horizon from the rollups), and that re-reading pruned
// deliveries adds nothing.
func TestPrune(t *testing.T) {
	ctx := context.Background()
	defer func(n int) { pruneChunk = n }(pruneChunk)
	pruneChunk = 97 // several delete transactions
	s, ds := fixture(t)
	before := t0.Add(-5*24*time.Hour - 7*time.Hour)
	h := before.Truncate(24 * time.Hour) // t0 is UTC
	var kept, gone []delivery.Delivery
	for _, d := range ds {
		if d.Time.Before(h) {
			gone = append(gone, d)
		} else {
			kept = append(kept, d)
		}
	}
	if len(gone) < 500 || len(kept) < 500 {
		t.Fatalf("fixture too thin: %d before, %d after the horizon", len(gone), len(kept))
	}
	res, err := s.Prune(ctx, before)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Horizon.Equal(h) || res.Deleted != int64(len(gone)) {
		t.Fatalf("Prune = %+v; want horizon %v, %d deleted", res, h, len(gone))
	}
	if got, err := s.Horizon(ctx); err != nil || !got.Equal(h) {
		t.Fatalf("Horizon = %v, %v; want %v", got, err, h)
	}
	if got := allDeliveries(t, s, Filter{}); len(got) != len(kept) {
		t.Fatalf("%d deliveries left, want %d", len(got), len(kept))
	}

	check := func(stage string) {
		t.Helper()
		ws := append(testWindows(),
			Window{Since: h.Add(-2*24*time.Hour + 6*time.Hour), Until: h.Add(-2*24*time.Hour + 18*time.Hour)}, // one pruned day
			Window{Since: h.Add(-3*24*time.Hour + 6*time.Hour), Until: h.Add(-24*time.Hour + 18*time.Hour)},   // both ends pruned
			Window{Since: h.Add(-time.Hour), Until: h.Add(time.Hour)})                                         // across the horizon
		oneDays := 0
		defer func() {
			if oneDays == 0 {
				t.Errorf("%s: no window within one pruned day was tried", stage)
			}
		}()
		for wi, w := range ws {
			for _, f := range testFilters {
				w.Domain = f
				fs, fu := FitWindow(w.Since, w.Until, h)
				fw := Window{Since: fs, Until: fu, Domain: f}
				oneDay := w.Since.Before(w.Until) && !fs.IsZero() && !fu.IsZero() && !fs.Before(fu)
				got, err := s.Summary(ctx, w)
				if oneDay {
					if !errors.Is(err, ErrBadInput) {
						t.Errorf("%s: Summary(window %d) within one pruned day: err %v, want ErrBadInput", stage, wi, err)
					}
					oneDays++
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if want := expectSummary(ds, fw); !reflect.DeepEqual(got, want) {
					t.Errorf("%s: Summary(window %d %q):\n got %+v\nwant %+v", stage, wi, f, got, want)
				}
				for _, by := range ReportDimensions {
					rows, err := s.ReportBy(ctx, w, by, 0)
					if err != nil {
						t.Fatal(err)
					}
					src := ds
					if (by == "hour" && f != "") || by == "policy" {
						src = kept // hours of single domains, and answers, are not kept before the horizon
					}
					want := expectReport(src, fw, by, 0)
					if (len(rows) != 0 || len(want) != 0) && !reflect.DeepEqual(rows, want) {
						t.Errorf("%s: ReportBy(%s, window %d %q):\n got %+v\nwant %+v", stage, by, wi, f, rows, want)
					}
				}
			}
		}
	}
	check("after prune")

	// Re-reading everything adds nothing: the pruned deliveries are older
	// than the horizon, the others are stored.
	bk := s.Bulk()
	n, err := bk.Add(ctx, mustBatch(t, ds))
	if err != nil || bk.Commit(ctx) != nil || bk.Close() != nil {
		t.Fatal(err)
	}
	if n != 0 || bk.Old() != len(gone) {
		t.Fatalf("re-import added %d and left out %d as old; want 0 and %d", n, bk.Old(), len(gone))
	}
	if n, err := s.AddDeliveries(ctx, ds[:50]); err != nil || n != 0 {
		t.Fatalf("AddDeliveries of stored or pruned deliveries: %d, %v", n, err)
	}
	check("after re-import")

	// New deliveries after the horizon are stored.
	fresh := testDelivery(900001, h.Add(time.Minute), "fresh.example")
	if n, err := s.AddDeliveries(ctx, []delivery.Delivery{fresh}); err != nil || n != 1 {
		t.Fatalf("new delivery after the horizon: %d, %v", n, err)
	}

	// An earlier horizon keeps the later one; the future is refused.
	if res, err := s.Prune(ctx, h.Add(-3*24*time.Hour)); err != nil || !res.Horizon.Equal(h) || res.Deleted != 0 {
		t.Fatalf("prune to an earlier time: %+v, %v", res, err)
	}
	if _, err := s.Prune(ctx, t0.Add(time.Hour)); !errors.Is(err, ErrBadInput) {
		t.Fatalf("prune into the future: %v", err)
	}

	// DryRun from mid-day before the horizon counts whole days from there.
	since := h.Add(-2*24*time.Hour + 5*time.Hour)
	got, err := s.DryRun(ctx, "example.com", "encrypt", since)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, d := range ds {
		if d.Domain == "example.com" && d.Status == delivery.Sent && !d.Internal && !d.Time.Before(h.Add(-24*time.Hour)) && d.Time.Before(t0) {
			want++
		}
	}
	if got.Deliveries != want {
		t.Fatalf("DryRun deliveries %d, want %d", got.Deliveries, want)
	}
}

func TestStatus(t *testing.T) {
	ctx := context.Background()
	s, ds := fixture(t)
	st, err := s.Status(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	first, last := ds[0].Time, ds[0].Time
	for _, d := range ds {
		first, last = minTime(first, d.Time), maxTime(last, d.Time)
	}
	if st.Counted != int64(len(ds)) || st.Stored != int64(len(ds)) || !st.First.Equal(first) || !st.Last.Equal(last) || !st.PrunedBefore.IsZero() {
		t.Fatalf("before prune: %+v; want %d counted and stored, %v to %v", st, len(ds), first, last)
	}
	if st.Bytes == 0 || st.Overrides != 0 {
		t.Fatalf("before prune: %+v", st)
	}
	res, err := s.Prune(ctx, t0.Add(-4*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if st, err = s.Status(ctx, t0); err != nil {
		t.Fatal(err)
	}
	if st.Counted != int64(len(ds)) || st.Stored != int64(len(ds))-res.Deleted || !st.PrunedBefore.Equal(res.Horizon) || st.First.Before(res.Horizon) {
		t.Fatalf("after prune (%+v): %+v", res, st)
	}
	exp := t0.Add(-time.Hour)
	if err := s.SetOverride(ctx, Override{Key: "old.example", Policy: "encrypt", Expires: exp}, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOverride(ctx, Override{Key: "new.example", Policy: "verify"}, "bob"); err != nil {
		t.Fatal(err)
	}
	if st, err = s.Status(ctx, t0); err != nil {
		t.Fatal(err)
	}
	if st.Overrides != 2 || st.Expired != 1 || st.LastActor != "bob" {
		t.Fatalf("overrides: %+v", st)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
