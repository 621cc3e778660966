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

// dayTimes returns first_time/last_time of every rollup_day row, keyed by
// the row's identity, as stored and as computed from the raw rows.
func dayTimes(t *testing.T, s *Store) (got, want []string) {
	t.Helper()
	r, _ := s.reader()
	rows, err := r.Query(`SELECT false, day, rdomain, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, first_time, last_time FROM rollup_day
		UNION ALL SELECT true, day, rdomain, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, first_time, last_time FROM rollup_day_internal`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var day, tls, port, first, last int64
		var rd, status, trust, proto, cipher, host string
		var fb, tf, internal bool
		if err := rows.Scan(&internal, &day, &rd, &status, &tls, &trust, &proto, &cipher, &fb, &tf, &host, &port, &first, &last); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%v|%d|%s|%s|%d|%s|%s|%s|%v|%v|%s|%d|%d|%d", internal, day, reverse(rd), status, tls, trust, proto, cipher, fb, tf, host, port, first, last))
	}
	rows.Close()
	type span struct{ first, last int64 }
	m := map[string]*span{}
	for _, d := range allDeliveries(t, s, Filter{}) {
		us := d.Time.UnixMicro()
		tls := 2
		if d.TLS != nil {
			tls = map[bool]int{false: 0, true: 1}[*d.TLS]
		}
		host, port := splitRelay(d.Relay)
		k := fmt.Sprintf("%v|%d|%s|%s|%d|%s|%s|%s|%v|%v|%s|%d", d.Internal, floorDiv(us, usPerDay), d.Domain, d.Status, tls, d.TLSTrust, d.TLSProtocol, d.TLSCipher, d.Fallback, d.TLSFailure, host, port)
		if sp := m[k]; sp != nil {
			sp.first, sp.last = min(sp.first, us), max(sp.last, us)
		} else {
			m[k] = &span{us, us}
		}
	}
	for k, sp := range m {
		want = append(want, fmt.Sprintf("%s|%d|%d", k, sp.first, sp.last))
	}
	sort.Strings(got)
	sort.Strings(want)
	return got, want
}

func mustBatch(t *testing.T, ds []delivery.Delivery) *Batch {
	t.Helper()
	b, err := PrepareBatch(ds)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func countDeliveries(t *testing.T, s *Store) int {
	t.Helper()
	r, _ := s.reader()
	var n int
	if err := r.QueryRow(`SELECT count(*) FROM deliveries`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkAutocheckpoint fails unless the writer connection checkpoints the
// WAL by itself again: a Bulk turns that off for its transactions only, and
// a writer left without it (the follower, after an import in the same
// process) would grow the WAL without bound.
func checkAutocheckpoint(t *testing.T, s *Store) {
	t.Helper()
	if s.eng != engSQLite {
		return // SQLite's setting
	}
	w, _ := s.writer()
	var pages int
	if err := w.QueryRow(`PRAGMA wal_autocheckpoint`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if want := walAutocheckpointBytes / pageSize; pages != want {
		t.Errorf("writer's wal_autocheckpoint is %d, want %d", pages, want)
	}
}

// TestBulk stores overlapping batches in one transaction, and rows already
// stored with different TLS details (a line first read without its TLS
// line), and checks counts, rollups (including first/last times) and
// visibility at commit.
func TestBulk(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	ds := randomDeliveries(7, 1000, t0.Add(-96*time.Hour), 96*time.Hour)

	// 100 rows stored earlier, some with TLS unknown where the bulk
	// batches will know it: same key, different rollup row.
	early := append([]delivery.Delivery(nil), ds[900:]...)
	for i := range early {
		if i%3 == 0 {
			early[i].TLS, early[i].TLSTrust, early[i].TLSProtocol, early[i].TLSCipher = nil, "", "", ""
		}
	}
	if n, err := s.AddDeliveries(ctx, early); err != nil || n != 100 {
		t.Fatalf("early rows: %d, %v", n, err)
	}

	bk := s.Bulk()
	steps := []struct {
		ds   []delivery.Delivery
		want int
	}{
		{ds[:400], 400},
		{ds[300:700], 300},  // overlaps the previous batch, same transaction
		{ds[650:1000], 200}, // overlaps it (50), and the 100 early rows
		{append(ds[10:20:20], ds[10:20]...), 0},
	}
	for i, st := range steps {
		n, err := bk.Add(ctx, mustBatch(t, st.ds))
		if err != nil || n != st.want {
			t.Fatalf("batch %d: added %d, %v; want %d", i, n, err, st.want)
		}
	}
	if n := countDeliveries(t, s); n != 100 {
		t.Errorf("before Commit a reader sees %d deliveries, want the 100 stored earlier", n)
	}
	if err := bk.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	checkAutocheckpoint(t, s)
	if n := countDeliveries(t, s); n != 1000 || bk.Committed() != 900 {
		t.Errorf("after Commit: %d deliveries, want 1000; Committed() = %d, want 900", n, bk.Committed())
	}
	checkRollups(t, s)
	if got, want := dayTimes(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("rollup_day first/last times differ from raw rows:\n got %v\nwant %v", got, want)
	}

	// Rollback drops what was added since the last commit, rollups too.
	day1, hour1 := dumpRollups(t, s)
	more := randomDeliveries(8, 200, t0.Add(-96*time.Hour), 96*time.Hour)
	if n, err := bk.Add(ctx, mustBatch(t, more)); err != nil || n != 200 {
		t.Fatalf("more: %d, %v", n, err)
	}
	if err := bk.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := bk.Commit(ctx); err != nil { // nothing open: a no-op
		t.Fatal(err)
	}
	if bk.Committed() != 900 {
		t.Errorf("Committed() = %d after a rollback, want 900", bk.Committed())
	}
	if err := bk.Close(); err != nil {
		t.Fatal(err)
	}
	checkAutocheckpoint(t, s)
	day2, hour2 := dumpRollups(t, s)
	if n := countDeliveries(t, s); n != 1000 || !reflect.DeepEqual(day1, day2) || !reflect.DeepEqual(hour1, hour2) {
		t.Errorf("after Rollback: %d deliveries (want 1000), rollups unchanged: %v", n, reflect.DeepEqual(day1, day2) && reflect.DeepEqual(hour1, hour2))
	}
}

// TestBulkCommitsWhenDue checks that a long bulk import does not hold the
// write lock indefinitely: once bulkMaxRows rows are in, Add commits.
func TestBulkCommitsWhenDue(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	bk := s.Bulk()
	ds := randomDeliveries(9, 3000, t0.Add(-time.Hour), time.Hour)
	for i := 0; i < len(ds); i += 1000 {
		if _, err := bk.Add(ctx, mustBatch(t, ds[i:i+1000])); err != nil {
			t.Fatal(err)
		}
	}
	if n := countDeliveries(t, s); n != 0 {
		t.Fatalf("%d rows visible before any commit was due", n)
	}
	// Force the row limit.
	bk.rows = bulkMaxRows
	if _, err := bk.Add(ctx, mustBatch(t, randomDeliveries(10, 10, t0.Add(-time.Hour), time.Hour))); err != nil {
		t.Fatal(err)
	}
	if n := countDeliveries(t, s); n != 3010 {
		t.Errorf("after reaching the row limit: %d rows visible, want 3010", n)
	}
	if bk.t != nil {
		t.Error("transaction still open after a due commit")
	}
	if err := bk.Close(); err != nil {
		t.Fatal(err)
	}
	checkRollups(t, s)
}

// TestBulkReleaseAfterCounting: a batch's release (Batch.SetRelease) comes
// once its rows are counted into the rollups, so that the caller may then
// overwrite the deliveries (an import reuses them) without changing what
// the rollups count.
func TestBulkReleaseAfterCounting(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	ds := randomDeliveries(9, 600, t0.Add(-48*time.Hour), 48*time.Hour)
	b := mustBatch(t, ds)
	released := 0
	b.SetRelease(func() {
		released++
		for i := range ds {
			ds[i].Domain, ds[i].Relay, ds[i].Status, ds[i].TLSProtocol = "released.invalid", "x.invalid[192.0.2.99]:25", delivery.Bounced, "garbage"
		}
	})
	bk := s.Bulk()
	if n, err := bk.Add(ctx, b); err != nil || n != len(ds) {
		t.Fatalf("add: %d, %v", n, err)
	}
	if err := bk.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bk.Close(); err != nil {
		t.Fatal(err)
	}
	if released != 1 {
		t.Fatalf("released %d times, want once", released)
	}
	checkRollups(t, s) // against the stored rows, written before the release
}
