package policyd

import (
	"fmt"
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
		ovs[i] = Override{Key: key, Policy: values[i%len(values)]}
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

// BenchOverrides and BenchKeys serve the load benchmarks of
// load_bench_test.go (package policyd_test, which can import
// internal/loadgen).
var BenchOverrides, BenchKeys = benchOverrides, benchKeys
