package ingest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailtls/mailtls/bench/gen"
	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// BenchmarkImport is an import of a generated log of 500,000 lines into a
// new database of each engine, for profiles (go test -bench Import
// -cpuprofile); the figures of BENCHMARKS.md come from make bench.
func BenchmarkImport(b *testing.B) {
	path := filepath.Join(b.TempDir(), "mail.log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	truth, err := gen.Log(f, gen.LogConfig{Seed: 1, Lines: 500_000})
	if err != nil || f.Close() != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			for b.Loop() {
				db := filepath.Join(b.TempDir(), "t.db")
				if engine == "postgres" {
					db = pgtest.DSN(b)
				}
				st, err := store.Open(ctx, db)
				if err != nil {
					b.Fatal(err)
				}
				res, err := Import(ctx, st.Bulk(), []string{path}, ImportOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if res.Committed != len(truth.Deliveries) {
					b.Fatalf("%d deliveries stored, the log has %d", res.Committed, len(truth.Deliveries))
				}
				st.Close()
			}
			b.ReportMetric(float64(len(truth.Deliveries)*b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
