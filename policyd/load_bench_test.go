package policyd_test

import (
	"context"
	"net"
	"testing"

	"github.com/mailtls/mailtls/internal/loadgen"
	"github.com/mailtls/mailtls/policyd"
)

// benchLoad runs RunLoad with 32 persistent connections against addr for
// b.N requests and reports throughput and latency.
func benchLoad(b *testing.B, addr string, keys []string) {
	b.Helper()
	b.ResetTimer()
	res, err := loadgen.RunLoad(context.Background(), loadgen.LoadConfig{
		Network: "tcp", Addr: addr, Proto: "socketmap",
		Conns: 32, MaxRequests: int64(b.N), Keys: keys,
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if res.Errors != 0 {
		b.Fatalf("%d errors", res.Errors)
	}
	b.ReportMetric(res.PerSec, "lookups/s")
	b.ReportMetric(float64(res.P50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(res.P99.Microseconds()), "p99-µs")
}

// BenchmarkSocketmap32Conns measures the real server, in process, on
// 127.0.0.1 with 32 client connections (the load client shares the CPUs).
func BenchmarkSocketmap32Conns(b *testing.B) {
	const n = 100_000
	tab := policyd.NewTable("may")
	tab.Store(policyd.NewSnapshot(policyd.BenchOverrides(n), "may"))
	srv := &policyd.Server{Table: tab}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.ServeSocketmap(context.Background(), ln)
	defer srv.Shutdown(context.Background())
	benchLoad(b, ln.Addr().String(), policyd.BenchKeys(n))
}

// BenchmarkSocketmapEcho32Conns is the ceiling: the same load against a
// server that answers "OK may" without looking anything up.
func BenchmarkSocketmapEcho32Conns(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go loadgen.ServeEcho(ctx, ln)
	benchLoad(b, ln.Addr().String(), policyd.BenchKeys(100_000))
}
