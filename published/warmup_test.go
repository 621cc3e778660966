package published

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/testnet"
)

// gatedStore holds LoadPublished at its first entry until release is
// closed, so that a test can look up while the load runs. The entries it
// loads are those of the MemStore when the load began.
type gatedStore struct {
	*MemStore
	started, release chan struct{}
	entryErr         error // PublishedEntry fails with it
}

func newGatedStore(ms *MemStore) *gatedStore {
	return &gatedStore{MemStore: ms, started: make(chan struct{}), release: make(chan struct{})}
}

func (s *gatedStore) LoadPublished(ctx context.Context, fn func(string, []byte) error) error {
	first := true
	return s.MemStore.LoadPublished(ctx, func(d string, data []byte) error {
		if first {
			first = false
			close(s.started)
			<-s.release
		}
		return fn(d, data)
	})
}

func (s *gatedStore) PublishedEntry(ctx context.Context, d string) ([]byte, bool, error) {
	if s.entryErr != nil {
		return nil, false, s.entryErr
	}
	return s.MemStore.PublishedEntry(ctx, d)
}

// startLoad runs r.Load until the gate holds it, and returns the channel
// of its result.
func startLoad(t *testing.T, r *Resolver, gs *gatedStore) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := r.Load(context.Background())
		done <- err
	}()
	select {
	case <-gs.started:
	case err := <-done:
		t.Fatalf("Load ended before its first entry: %v", err)
	case <-time.After(10 * time.Second): // a safety net, never the expected path
		t.Fatal("Load did not start")
	}
	if r.Loaded() {
		t.Fatal("Loaded() while the load is held")
	}
	return done
}

// TestLookupsDuringLoad: while Load runs, a cached destination the load
// has not reached is answered from its stored entry, not as a first
// contact (which, here, would find no policy: never weaker), and a
// destination resolved during the load keeps its new answer when the load
// reaches its older entry.
func TestLookupsDuringLoad(t *testing.T) {
	const stsAnswer = "secure match=mx1.sts.example servername=hostname"
	ctx := context.Background()
	e := newEnv(t)
	z := e.zone
	z.Add(t, "sts.example. 300 IN MX 10 mx1.sts.example.", "mx1.sts.example. 300 IN A 127.0.0.1")
	e.sts("sts.example", "7")
	e.policy("sts.example", "version: STSv1\nmode: enforce\nmx: mx1.sts.example\nmax_age: 86400\n")
	z.Sign("dane.example")
	z.Add(t, "dane.example. 300 IN MX 10 mx1.dane.example.", "mx1.dane.example. 300 IN A 127.0.0.1",
		"_25._tcp.mx1.dane.example. 300 IN TLSA "+tlsaData)
	ms := &MemStore{}
	r1 := e.resolver(func(c *Config) { c.Store = ms })
	wantAnswer(t, resolve(t, r1, "sts.example"), SourceMTASTS, stsAnswer)
	r1.Close()
	// A fresh resolution of sts.example now finds no policy (the policy
	// host fails): only its cached policy gives the answer.
	e.setStatus("sts.example", http.StatusInternalServerError)
	fetches := e.fetchCount("sts.example")
	// dane.example is cached as publishing nothing, and is due.
	now := e.clock.Now()
	old, err := json.Marshal(stored{V: 1, Result: Result{Source: SourceNone, ResolvedAt: now.Add(-2 * time.Hour)}, RefreshAt: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if err := ms.SavePublished(ctx, "dane.example", "none", "", old, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	gs := newGatedStore(ms)
	r2 := e.resolver(func(c *Config) { c.Store = gs })
	loaded := startLoad(t, r2, gs)
	res := r2.Lookup(ctx, "sts.example")
	wantAnswer(t, res, SourceMTASTS, stsAnswer)
	if res.Pending || e.fetchCount("sts.example") != fetches {
		t.Errorf("sts.example during the load: pending %v, %d policy fetches, want its cached policy and none", res.Pending, e.fetchCount("sts.example")-fetches)
	}
	wantAnswer(t, resolve(t, r2, "dane.example"), SourceDANE, "dane-only")
	if r2.Loaded() {
		t.Fatal("the load finished before the lookups: they did not race it")
	}
	close(gs.release)
	if err := <-loaded; err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !r2.Loaded() {
		t.Error("Loaded() is false after Load")
	}
	got, ok := r2.Cached("dane.example")
	if !ok {
		t.Fatal("dane.example is not cached after the load")
	}
	wantAnswer(t, got, SourceDANE, "dane-only")
	wantAnswer(t, r2.Lookup(ctx, "sts.example"), SourceMTASTS, stsAnswer)
}

// TestLookupDuringLoadStoreFails: while Load runs, a lookup whose stored
// entry cannot be read is Unavailable (the daemon answers TEMP), and
// nothing is resolved for it, which could replace a cached policy.
func TestLookupDuringLoadStoreFails(t *testing.T) {
	ctx := context.Background()
	ms := &MemStore{}
	data, err := json.Marshal(stored{V: 1, Result: Result{Source: SourceDANE, Policy: "dane-only"}, RefreshAt: testnet.Now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if err := ms.SavePublished(ctx, "dane.example", "dane", "dane-only", data, testnet.Now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	gs := newGatedStore(ms)
	gs.entryErr = errors.New("disk on fire")
	f := newFakeDNS(t, false)
	r, err := New(Config{DNS: f, Store: gs, Clock: newFakeClock(testnet.Now)})
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	defer r.Close()
	loaded := startLoad(t, r, gs)
	for _, d := range []string{"dane.example", "new.example"} {
		if res := r.Lookup(ctx, d); !res.Unavailable || res.Source != SourceNone || !hasNote(res, "disk on fire") {
			t.Errorf("%s while the store fails: %+v, want Unavailable with the reason", d, res)
		}
	}
	close(gs.release)
	if err := <-loaded; err != nil {
		t.Fatalf("Load: %v", err)
	}
	r.Wait()
	if n := f.count("dane.example") + f.count("new.example"); n != 0 {
		t.Errorf("%d DNS queries for destinations whose cache could not be read, want none", n)
	}
	res := r.Lookup(ctx, "dane.example")
	wantAnswer(t, res, SourceDANE, "dane-only")
	if res.Unavailable {
		t.Error("Unavailable after the load, when memory answers")
	}
}
