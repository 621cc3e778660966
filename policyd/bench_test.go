package policyd

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"
)

// benchOverrides returns n overrides: a mix of exact domains, wildcards and
// bracketed next-hops.
func benchOverrides(n int) []Override {
	ovs := make([]Override, n)
	values := []string{"encrypt", "verify match=hostname:nexthop", "encrypt protocols=>=TLSv1.2 ciphers=high", "dane", "none"}
	for i := range ovs {
		var key string
		switch i % 4 {
		case 0, 1:
			key = fmt.Sprintf("d%d.example", i)
		case 2:
			key = fmt.Sprintf(".w%d.example", i)
		default:
			key = fmt.Sprintf("[mx%d.example]:587", i)
		}
		ovs[i] = Override{Key: key, Value: values[i%len(values)]}
	}
	return ovs
}

func benchKeys(n int) []string {
	return []string{
		fmt.Sprintf("d%d.example", n/2),            // exact
		fmt.Sprintf("Mail.Sub.w%d.example", n/2+2), // wildcard, two levels up, mixed case
		fmt.Sprintf("[mx%d.example]:587", n/2+3),   // bracketed
		"nowhere.example.org",                      // default
	}
}

func BenchmarkLookup(b *testing.B) {
	const n = 100_000
	snap := NewSnapshot(benchOverrides(n), "may")
	if snap.Len() != n {
		b.Fatalf("snapshot has %d overrides", snap.Len())
	}
	keys := benchKeys(n)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := snap.Lookup(keys[i&3], now); !r.Found {
			b.Fatal("not found")
		}
	}
}

// BenchmarkLookup1M is BenchmarkLookup over a million overrides, where the
// index no longer fits in the CPU caches.
func BenchmarkLookup1M(b *testing.B) {
	const n = 1_000_000
	snap := NewSnapshot(benchOverrides(n), "may")
	keys := benchKeys(n)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := snap.Lookup(keys[i&3], now); !r.Found {
			b.Fatal("not found")
		}
	}
}

func BenchmarkSnapshotBuild100k(b *testing.B) {
	ovs := benchOverrides(100_000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if s := NewSnapshot(ovs, "may"); s.Len() != len(ovs) {
			b.Fatal(s.Len())
		}
	}
}

// benchLoad runs RunLoad with 32 persistent connections against addr for
// b.N requests and reports throughput and latency.
func benchLoad(b *testing.B, addr string, keys []string) {
	b.Helper()
	b.ResetTimer()
	res, err := RunLoad(context.Background(), LoadConfig{
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
	tab := NewTable("may")
	tab.Store(NewSnapshot(benchOverrides(n), "may"))
	srv := &Server{Table: tab}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.ServeSocketmap(context.Background(), ln)
	defer srv.Shutdown(context.Background())
	benchLoad(b, ln.Addr().String(), benchKeys(n))
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
	go ServeEcho(ctx, ln)
	benchLoad(b, ln.Addr().String(), benchKeys(100_000))
}
