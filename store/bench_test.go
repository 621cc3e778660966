package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mailtls/mailtls/bench/gen"
	"github.com/mailtls/mailtls/delivery"
)

// fillGenerated adds the n deliveries of gen.Deliveries over the days
// before s's clock, 100,000 to a transaction.
func fillGenerated(ctx context.Context, s *Store, n, days int, seed int64) error {
	return gen.Deliveries(n, days, seed, s.now(), 100_000, func(ds []delivery.Delivery) error {
		_, err := s.AddDeliveries(ctx, ds)
		return err
	})
}

// BenchmarkCommitBatch measures the follower/import write path: batches of
// deliveries with real (random) sha256 keys, rollups and a checkpoint, into
// a growing database.
func BenchmarkCommitBatch(b *testing.B) {
	for _, size := range []int{1000, 5000, 20000} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			ctx := context.Background()
			s, err := Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			g := gen.NewDeliveryModel(1_000_000, 1)
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			next := 0
			batch := func() []delivery.Delivery {
				ds := make([]delivery.Delivery, size)
				for i := range ds {
					// ~250k deliveries a day, like a 1M-line log.
					ds[i] = g.Delivery(next, start.Add(time.Duration(next)*350*time.Millisecond), 0.5)
					h := sha256.Sum256([]byte(ds[i].Key))
					ds[i].Key = hex.EncodeToString(h[:])
					next++
				}
				return ds
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				ds := batch()
				b.StartTimer()
				n, err := s.CommitBatch(ctx, "bench", ds, []byte(strconv.Itoa(next)))
				if err != nil || n != size {
					b.Fatalf("added %d, %v", n, err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// benchStore opens the cached report-benchmark database named by
// MAILTLS_BENCH_DB (default: a file in the temp dir), filling it with
// MAILTLS_BENCH_ROWS deliveries over MAILTLS_BENCH_DAYS days (default 90)
// if it has fewer. Benchmarks using it are skipped unless
// MAILTLS_BENCH_ROWS is set, e.g.
//
//	MAILTLS_BENCH_ROWS=10000000 MAILTLS_BENCH_DB=/var/tmp/mailtls-10m.db \
//	  go test -run '^$' -bench 'Summary|Report' -benchtime 5x ./store/
func benchStore(b *testing.B) (*Store, time.Time) {
	b.Helper()
	rows, _ := strconv.Atoi(os.Getenv("MAILTLS_BENCH_ROWS"))
	if rows <= 0 {
		b.Skip("set MAILTLS_BENCH_ROWS (and MAILTLS_BENCH_DB) to run report benchmarks")
	}
	days := 90
	if d, err := strconv.Atoi(os.Getenv("MAILTLS_BENCH_DAYS")); err == nil && d > 0 {
		days = d
	}
	path := os.Getenv("MAILTLS_BENCH_DB")
	if path == "" {
		path = filepath.Join(os.TempDir(), fmt.Sprintf("mailtls-bench-%d-%dd.db", rows, days))
	}
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	// The rows are host bench's: a new database's first writer, or, on a
	// database filled before fleet hosts, the one that claims its rows.
	if err := s.SetHost(ctx, benchHost); err != nil {
		b.Fatal(err)
	}
	r, _ := s.reader()
	var have int
	if err := r.QueryRow(`SELECT count(*) FROM deliveries`).Scan(&have); err != nil {
		b.Fatal(err)
	}
	if have < rows {
		start := time.Now()
		if err := fillGenerated(ctx, s, rows-have, days, int64(have)+1); err != nil {
			b.Fatal(err)
		}
		b.Logf("filled %d deliveries over %d days in %v", rows-have, days, time.Since(start))
	}
	var last int64
	if err := r.QueryRow(`SELECT max(time) FROM deliveries`).Scan(&last); err != nil {
		b.Fatal(err)
	}
	// End the windows at an odd time so both edges cut through a day.
	return s, fromMicros(last).Add(-3*time.Hour - 17*time.Minute - 5*time.Second)
}

func benchSummary(b *testing.B, days int) {
	s, end := benchStore(b)
	ctx := context.Background()
	w := Window{Since: end.Add(-time.Duration(days) * 24 * time.Hour), Until: end}
	b.ResetTimer()
	var sum Summary
	for i := 0; i < b.N; i++ {
		var err error
		if sum, err = s.Summary(ctx, w); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.Logf("%dd: %d sent, %d domains, coverage %.4f", days, sum.Deliveries, sum.Domains, sum.Coverage)
}

// benchHost is the fleet host of the benchmark database's rows.
const benchHost = "bench"

func BenchmarkSummary7d(b *testing.B)  { benchSummary(b, 7) }
func BenchmarkSummary90d(b *testing.B) { benchSummary(b, 90) }

// BenchmarkReports times the other report queries on the cached database.
func BenchmarkReports(b *testing.B) {
	s, end := benchStore(b)
	ctx := context.Background()
	w7 := Window{Since: end.Add(-7 * 24 * time.Hour), Until: end}
	w90 := Window{Since: end.Add(-90 * 24 * time.Hour), Until: end}
	cases := []struct {
		name string
		fn   func() (int, error)
	}{
		{"Summary7d/domain", func() (int, error) {
			_, err := s.Summary(ctx, Window{Since: w7.Since, Until: end, Domain: "d0.example"})
			return 1, err
		}},
		{"ReportBy7d/domain", func() (int, error) { r, err := s.ReportBy(ctx, w7, "domain", 20); return len(r), err }},
		{"ReportBy90d/domain", func() (int, error) { r, err := s.ReportBy(ctx, w90, "domain", 20); return len(r), err }},
		{"ReportBy90d/day", func() (int, error) { r, err := s.ReportBy(ctx, w90, "day", 0); return len(r), err }},
		{"ReportBy7d/hour", func() (int, error) { r, err := s.ReportBy(ctx, w7, "hour", 0); return len(r), err }},
		{"ReportBy90d/relay", func() (int, error) { r, err := s.ReportBy(ctx, w90, "relay", 20); return len(r), err }},
		{"ReportBy90d/protocol", func() (int, error) { r, err := s.ReportBy(ctx, w90, "protocol", 0); return len(r), err }},
		{"ReportBy90d/host", func() (int, error) { r, err := s.ReportBy(ctx, w90, "host", 0); return len(r), err }},
		{"Summary90d/host", func() (int, error) {
			_, err := s.Summary(ctx, Window{Since: w90.Since, Until: end, Host: benchHost})
			return 1, err
		}},
		{"ReportBy7d/domain/host", func() (int, error) {
			r, err := s.ReportBy(ctx, Window{Since: w7.Since, Until: end, Host: benchHost}, "domain", 20)
			return len(r), err
		}},
		{"Downgrades7d", func() (int, error) { r, err := s.Downgrades(ctx, w7); return len(r), err }},
		{"Downgrades90d", func() (int, error) { r, err := s.Downgrades(ctx, w90); return len(r), err }},
		{"OverrideActivity90d", func() (int, error) {
			r, err := s.OverrideActivity(ctx, w90, []string{"d0.example", ".sub.d1.example", "[mx0.d2.example]:25"})
			return len(r), err
		}},
		{"Suggest", func() (int, error) { r, err := s.Suggest(ctx, 100, 7, end, false); return len(r), err }},
		{"DryRun90d", func() (int, error) { _, err := s.DryRun(ctx, "d0.example", "verify", w90.Since); return 1, err }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var n int
			for i := 0; i < b.N; i++ {
				var err error
				if n, err = c.fn(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n), "results")
		})
	}
}
