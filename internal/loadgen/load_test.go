package loadgen

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/servetest"
	"github.com/mailtls/mailtls/policyd"
)

func TestHist(t *testing.T) {
	// Bucket bounds are contiguous and each value lands in a bucket whose
	// upper bound is at most 1/32 above it.
	prev := -1
	for _, v := range []uint64{0, 1, 31, 63, 64, 65, 127, 128, 1000, 1 << 20, 1<<40 + 12345, 1<<63 - 1, 1<<64 - 1} {
		i := histIndex(v)
		if i >= histBuckets || i < prev {
			t.Fatalf("histIndex(%d) = %d", v, i)
		}
		prev = i
		up := histUpper(i)
		if up < v || float64(up-v) > float64(v)/32+1 {
			t.Errorf("value %d: bucket %d upper bound %d", v, i, up)
		}
		if i > 0 && histUpper(i-1) >= v {
			t.Errorf("value %d also fits bucket %d (upper %d)", v, i-1, histUpper(i-1))
		}
	}
	// Quantiles of a known distribution: 1..10000 µs.
	var h hist
	vals := make([]time.Duration, 10000)
	for i := range vals {
		vals[i] = time.Duration(i+1) * time.Microsecond
	}
	rand.Shuffle(len(vals), func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
	for _, v := range vals {
		h.add(v)
	}
	for _, q := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {0.999, 9990 * time.Microsecond}, {1, 10000 * time.Microsecond}} {
		got := h.quantile(q.q)
		if got < q.want || float64(got-q.want) > float64(q.want)/32 {
			t.Errorf("quantile(%v) = %v, want %v within 1/32", q.q, got, q.want)
		}
	}
	var h2 hist
	h2.merge(&h)
	h2.merge(&h)
	if h2.n != 20000 || h2.quantile(0.5) != h.quantile(0.5) || h2.max != h.max {
		t.Errorf("merge: n=%d p50=%v max=%d", h2.n, h2.quantile(0.5), h2.max)
	}
	var empty hist
	if empty.quantile(0.99) != 0 {
		t.Error("empty histogram quantile is not 0")
	}
}

func TestRunLoad(t *testing.T) {
	for _, tc := range []struct {
		network  string
		tcpTable bool
		name     string
	}{{"tcp", false, "socketmap"}, {"unix", false, "socketmap"}, {"tcp", true, "tcp"}} {
		t.Run(tc.network+"/"+tc.name, func(t *testing.T) {
			srv := newTestServer(t, "may")
			network, addr := listen(t, srv, tc.network, tc.tcpTable)
			res, err := RunLoad(context.Background(), LoadConfig{
				Network: network, Addr: addr, Proto: tc.name,
				Conns: 4, MaxRequests: 3000,
				Keys: []string{"example.com", "a.corp.example", "[mx.example.net]:587", "bücher.example", "elsewhere.example"},
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != 3000 || res.Errors != 0 {
				t.Errorf("requests %d errors %d, want 3000 and 0", res.Requests, res.Errors)
			}
			if res.PerSec <= 0 || res.P50 <= 0 || res.P50 > res.P99 || res.P99 > res.P999 || res.P999 > res.Max {
				t.Errorf("inconsistent result %+v", res)
			}
		})
	}
}

func TestRunLoadCountsErrors(t *testing.T) {
	// A wrong map name gets PERM replies: each one is an error.
	srv := newTestServer(t, "may")
	_, addr := listen(t, srv, "tcp", false)
	res, err := RunLoad(context.Background(), LoadConfig{Addr: addr, MapName: "wrong", Conns: 2, MaxRequests: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 100 || res.Errors != 100 {
		t.Errorf("requests %d errors %d, want 100 and 100", res.Requests, res.Errors)
	}
	// Nobody listening: an error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	if _, err := RunLoad(context.Background(), LoadConfig{Addr: dead, MaxRequests: 10}); err == nil {
		t.Error("RunLoad against a closed port succeeded")
	}
}

func TestRunLoadStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	echoDone := make(chan error, 1)
	go func() { echoDone <- ServeEcho(ctx, ln) }()

	// By duration.
	res, err := RunLoad(context.Background(), LoadConfig{Addr: ln.Addr().String(), Conns: 2, Duration: 50 * time.Millisecond})
	if err != nil || res.Requests == 0 || res.Errors != 0 {
		t.Errorf("by duration: %+v, %v", res, err)
	}
	// By context.
	lctx, lcancel := context.WithCancel(context.Background())
	got := make(chan LoadResult, 1)
	go func() {
		r, _ := RunLoad(lctx, LoadConfig{Addr: ln.Addr().String(), Conns: 2})
		got <- r
	}()
	lcancel()
	<-got

	cancel()
	if err := <-echoDone; err != nil {
		t.Errorf("ServeEcho: %v", err)
	}
}

func TestRunLoadConfigErrors(t *testing.T) {
	for _, cfg := range []LoadConfig{
		{Addr: "127.0.0.1:1", Proto: "http", MaxRequests: 1},
		{MaxRequests: 1},
		{Addr: "127.0.0.1:1"}, // would never stop
	} {
		if _, err := RunLoad(context.Background(), cfg); !errors.Is(err, ErrBadLoadConfig) {
			t.Errorf("RunLoad(%+v) = %v, want ErrBadLoadConfig", cfg, err)
		}
	}
}

func TestServeEchoReplies(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ServeEcho(ctx, ln)
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br, bw := bufio.NewReader(c), bufio.NewWriter(c)
	var got []string
	var scratch []byte
	for _, q := range []string{"tlspolicy a", "anything at all"} {
		if err := policyd.WriteNetstring(bw, "", q); err != nil {
			t.Fatal(err)
		}
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
		rep, err := policyd.ReadNetstring(br, policyd.MaxReply, &scratch)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(rep))
	}
	if !slices.Equal(got, []string{"OK may", "OK may"}) {
		t.Errorf("echo replies %q", got)
	}
}

// newTestServer is a real policy daemon answering from a few overrides,
// with def for everything else.
func newTestServer(t testing.TB, def string) *policyd.Server {
	t.Helper()
	tab := policyd.NewTable(def)
	tab.Store(policyd.NewSnapshot([]policyd.Override{
		{Key: "example.com", Policy: "encrypt protocols=>=TLSv1.2"},
		{Key: ".corp.example", Policy: "verify match=hostname"},
	}, def))
	return &policyd.Server{Table: tab, IdleTimeout: 10 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// listen serves srv on a fresh listener ("tcp" on 127.0.0.1:0, or "unix"
// in a temporary directory) until the end of the test.
func listen(t testing.TB, srv *policyd.Server, network string, tcpTable bool) (string, string) {
	t.Helper()
	ln, err := policyd.Listen(context.Background(), network, servetest.Addr(t, network), 0)
	if err != nil {
		t.Fatal(err)
	}
	return network, servetest.Serve(t, srv, ln, tcpTable)
}
