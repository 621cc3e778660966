package policyd

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// gatedSource is a Source whose Overrides stops after its first override
// until release is closed: a load in progress.
type gatedSource struct {
	ovs              []Override
	started, release chan struct{}
}

func (s *gatedSource) Version(context.Context) (uint64, error) { return 1, nil }

func (s *gatedSource) Overrides(_ context.Context, add func(Override)) error {
	for i, o := range s.ovs {
		if i == 1 {
			close(s.started)
			<-s.release
		}
		add(o)
	}
	return nil
}

// pointSource is a KeySource over a list, counting its queries.
type pointSource struct {
	ovs     []Override
	queries atomic.Int64
	err     error
}

func (s *pointSource) OverridesFor(_ context.Context, keys []string, add func(Override)) error {
	s.queries.Add(1)
	if s.err != nil {
		return s.err
	}
	for _, o := range s.ovs {
		if slices.Contains(keys, o.Key) {
			add(o)
		}
	}
	return nil
}

// warmupOverrides: exact, wildcard, bracketed, IDN and expired overrides,
// and one for a parent (.example) that an exact one below it beats.
var warmupOverrides = []Override{
	{Key: "other.example", Policy: "may"}, // the one the load passes before it stops
	{Key: "example.com", Policy: "encrypt protocols=>=TLSv1.2"},
	{Key: ".corp.example", Policy: "verify match=hostname"},
	{Key: "[mx.example.net]:587", Policy: "secure"},
	{Key: "xn--bcher-kva.example", Policy: "dane"},
	{Key: "old.example", Policy: "secure", Expires: time.Unix(1, 0)},
	{Key: ".example", Policy: "encrypt"},
	{Key: "exact.example", Policy: "dane-only"},
}

// warmupQueries and what the whole table answers (default may).
var warmupQueries = map[string]string{
	"example.com":          "OK encrypt protocols=>=TLSv1.2",
	"EXAMPLE.com.":         "OK encrypt protocols=>=TLSv1.2",
	"mx.Corp.Example":      "OK verify match=hostname",
	"a.b.corp.example":     "OK verify match=hostname",
	"corp.example":         "OK encrypt", // .corp.example is for subdomains; .example matches
	"[mx.example.net]:587": "OK secure",
	"[mx.example.net]":     "OK may",
	"bücher.example":       "OK dane",
	"old.example":          "OK encrypt", // expired: the parent wildcard applies
	"exact.example":        "OK dane-only",
	"elsewhere.test":       "OK may",
}

// TestWarmupNeverWeaker: lookups racing the table's first load get what
// the loaded table answers (the overrides, not the default), from point
// queries; once loaded, memory answers alone. A failing point query gets
// TEMP, never the default.
func TestWarmupNeverWeaker(t *testing.T) {
	tab := NewTable("may")
	ps := &pointSource{ovs: warmupOverrides}
	tab.SetWarmup(ps)
	srv := &Server{Table: tab, IdleTimeout: 10 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	_, addr := listen(t, srv, "tcp", protoSocketmap)
	cl := dial(t, "tcp", addr)

	gs := &gatedSource{ovs: warmupOverrides, started: make(chan struct{}), release: make(chan struct{})}
	loaded := make(chan error, 1)
	go func() {
		_, err := tab.Reload(context.Background(), gs)
		loaded <- err
	}()
	select {
	case <-gs.started:
	case <-time.After(10 * time.Second): // a safety net, never the expected path
		t.Fatal("the load did not start")
	}
	if tab.Load() != nil {
		t.Fatal("a snapshot is stored while the load is held: the lookups would not race it")
	}
	for q, want := range warmupQueries {
		if got := cl.query("tlspolicy " + q); got != want {
			t.Errorf("during the load: %s = %q, want %q", q, got, want)
		}
	}
	if n := ps.queries.Load(); n != int64(len(warmupQueries)) {
		t.Errorf("%d point queries during the load, want one per lookup (%d)", n, len(warmupQueries))
	}
	_, tcpAddr := listen(t, srv, "tcp", protoTCPTable)
	tcp := dial(t, "tcp", tcpAddr)
	tcp.send("get a.corp.example\n")
	if got := tcp.line(); got != "200 verify%20match=hostname" {
		t.Errorf("tcp_table during the load: %q", got)
	}

	close(gs.release)
	if err := <-loaded; err != nil {
		t.Fatal(err)
	}
	before := ps.queries.Load()
	for q, want := range warmupQueries {
		if got := cl.query("tlspolicy " + q); got != want {
			t.Errorf("loaded: %s = %q, want %q", q, got, want)
		}
	}
	if n := ps.queries.Load() - before; n != 0 {
		t.Errorf("%d point queries once loaded, want none", n)
	}
}

func TestWarmupQueryFails(t *testing.T) {
	tab := NewTable("may")
	tab.SetWarmup(&pointSource{err: errors.New("disk on fire")})
	srv := &Server{Table: tab, IdleTimeout: 10 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	_, addr := listen(t, srv, "tcp", protoSocketmap)
	cl := dial(t, "tcp", addr)
	for range 2 {
		if got := cl.query("tlspolicy example.com"); got != "TEMP policy table not loaded yet" {
			t.Errorf("failed point query: %q, want TEMP", got)
		}
	}
}

func TestWarmupGC(t *testing.T) {
	old := debug.SetGCPercent(200)
	defer debug.SetGCPercent(old)
	restore := WarmupGC()
	if got := debug.SetGCPercent(warmupGCPercent); got != warmupGCPercent {
		t.Errorf("GOGC during the warm-up = %d, want %d", got, warmupGCPercent)
	}
	restore()
	if got := debug.SetGCPercent(200); got != 200 {
		t.Errorf("GOGC after the warm-up = %d, want 200", got)
	}
	debug.SetGCPercent(-1) // GOGC=off stays off
	WarmupGC()
	if got := debug.SetGCPercent(-1); got != -1 {
		t.Errorf("GOGC=off became %d", got)
	}
}
