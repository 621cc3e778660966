package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailtls/mailtls/discover"
	"github.com/mailtls/mailtls/internal/servetest"
	"github.com/mailtls/mailtls/internal/testnet"
	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/published"
	"github.com/mailtls/mailtls/store"
)

// TestWarmupFromStore: before the daemon's start-up loads have run, its
// lookups read the SQLite store (the point queries of the warm-up), so
// that real Postfix gets the overrides (exact and .parent) and the cached
// DANE answer, as after the loads, and not the default. The resolver
// would now find nothing for the cached destination: only the cache
// gives its answer.
func TestWarmupFromStore(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "mailtls.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, o := range []store.Override{{Key: ".corp.example", Policy: "verify match=hostname"}, {Key: "forced.example", Policy: "encrypt"}} {
		if err := st.SetOverride(ctx, o, "tester"); err != nil {
			t.Fatal(err)
		}
	}
	z := testnet.NewZone()
	z.Sign("all.example")
	z.Add(t, "all.example. 300 IN MX 10 mx1.all.example.", "mx1.all.example. 300 IN A 127.0.0.1",
		"_25._tcp.mx1.all.example. 300 IN TLSA "+testTLSA)
	newResolver := func(dnsAddr string) *published.Resolver {
		r, err := published.New(published.Config{DNS: &discover.Resolver{Servers: []string{dnsAddr}, Timeout: 2 * time.Second},
			TrustAD: true, Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		r.Start()
		t.Cleanup(r.Close)
		return r
	}
	r1 := newResolver(testnet.StartDNS(t, z))
	if res, err := r1.Resolve(ctx, "all.example"); err != nil || res.Policy != "dane-only" {
		t.Fatalf("resolving all.example: %+v, %v", res, err)
	}
	r1.Close()

	r := newResolver(testnet.StartDNS(t, testnet.NewZone())) // Load not called: the load has not reached anything
	table := policyd.NewTable("may")
	table.SetWarmup(StoreSource{st})
	table.SetPublisher(r)
	srv := &policyd.Server{Table: table, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ln, err := policyd.Listen(ctx, "tcp", "127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeSocketmap(ctx, ln) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	m := "socketmap:inet:" + ln.Addr().String() + ":tlspolicy"
	want := map[string]string{
		"mx.corp.example": "verify match=hostname",
		"forced.example":  "encrypt",
		"all.example":     "dane-only",
		"plain.example":   "may",
	}
	check := func(when string) {
		t.Helper()
		for key, w := range want {
			if got, code := servetest.PostmapQ(t, key, m); code != 0 || got != w {
				t.Errorf("%s: postmap -q %s = %q (exit %d), want %q", when, key, got, code, w)
			}
		}
	}
	check("before the loads")
	if table.Load() != nil || r.Loaded() {
		t.Fatal("something was loaded: the lookups did not come before the loads")
	}
	if _, err := table.Reload(ctx, StoreSource{st}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	check("after the loads")
}

// TestHealthWhileLoading: /healthz answers 503 with what the daemon is
// still loading at start, and ok once both loads are done.
func TestHealthWhileLoading(t *testing.T) {
	r, err := published.New(published.Config{DNS: &discover.Resolver{Servers: []string{"127.0.0.1:9"}}, Store: &published.MemStore{}})
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{table: policyd.NewTable("may"), pub: &publishedDaemon{r: r}}
	if err := health(d, nil); err == nil || err.Error() != "still loading the overrides and published cache" {
		t.Errorf("nothing loaded: health = %v", err)
	}
	d.table.Store(policyd.NewSnapshot(nil, "may"))
	if err := health(d, nil); err == nil || err.Error() != "still loading the published cache" {
		t.Errorf("overrides loaded: health = %v", err)
	}
	if _, err := r.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := health(d, nil); err != nil {
		t.Errorf("all loaded: health = %v", err)
	}
}

// testTLSA is a DANE-EE SPKI SHA-256 record; the tests' DNS signs it.
const testTLSA = "3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
