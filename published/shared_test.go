package published

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/internal/testnet"
	"github.com/mailtls/mailtls/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The store shares the cache between daemons on both engines.
var _ SharedStore = (*store.Store)(nil)

// sharedStores opens two handles on one database of the engine, as two
// hosts' daemons would.
func sharedStores(t *testing.T, engine string) (*store.Store, *store.Store) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mailtls.db")
	if engine == "postgres" {
		path = pgtest.DSN(t)
	}
	ctx := context.Background()
	var out [2]*store.Store
	for i := range out {
		st, err := store.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		out[i] = st
	}
	return out[0], out[1]
}

// waitDone advances the clock by claimPoll whenever a timer waits, until
// done is closed.
func waitDone(t *testing.T, c *fakeClock, done <-chan struct{}) {
	t.Helper()
	for {
		c.mu.Lock()
		n, ch := len(c.timers), c.changed
		c.mu.Unlock()
		if n > 0 {
			c.Advance(claimPoll)
			continue
		}
		select {
		case <-done:
			return
		case <-ch:
		case <-time.After(10 * time.Second): // a safety net, never the expected path
			t.Fatal("the resolution did not end")
		}
	}
}

// TestFleetRefreshOnce: two daemons sharing one database resolve a
// destination once. While the first resolves it (its claim held), the
// second waits and adopts the first's answer without a query of its own;
// a claim whose holder died makes the second wait at most its budget and
// keep what it knew, and once the claim lapses the second resolves.
func TestFleetRefreshOnce(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			st1, st2 := sharedStores(t, engine)
			clock := newFakeClock(testnet.Now)
			zone := append([]string{"other.example. 300 IN MX 10 mx.other.example.", "mx.other.example. 300 IN A 127.0.0.1"}, daneZone...)
			f1, f2 := newFakeDNS(t, true, zone...), newFakeDNS(t, true, zone...)
			f1.block = func(name string) bool { return name == "cached.example" }
			daemon := func(f *fakeDNS, st *store.Store) *Resolver {
				r, err := New(Config{DNS: f, TrustAD: true, Store: st, Clock: clock, Budget: time.Second})
				if err != nil {
					t.Fatal(err)
				}
				r.Start()
				t.Cleanup(r.Close)
				return r
			}
			r1, r2 := daemon(f1, st1), daemon(f2, st2)

			done1, _ := r1.schedule("cached.example", false)
			<-f1.blocked // r1 holds the claim and is resolving
			done2, _ := r2.schedule("cached.example", false)
			clock.waitTimers(t, 1) // r2 waits for r1's answer
			close(f1.release)
			<-done1
			waitDone(t, clock, done2)
			if n := f2.count("cached.example"); n != 0 {
				t.Errorf("the second daemon queried cached.example %d times; want 0 (it adopts the first's answer)", n)
			}
			a, ok1 := r1.Cached("cached.example")
			b, ok2 := r2.Cached("cached.example")
			if !ok1 || !ok2 || b.Source != SourceDANE || b.Policy != a.Policy || !b.ResolvedAt.Equal(a.ResolvedAt) {
				t.Errorf("second daemon: %+v (%v); want the first's %+v", b, ok2, a)
			}

			// A claim whose holder is gone.
			if ok, err := st1.ClaimRefresh(ctx, "other.example", "dead/1/00", clock.Now(), clock.Now().Add(claimFor)); !ok || err != nil {
				t.Fatalf("ClaimRefresh = %v, %v", ok, err)
			}
			start := clock.Now()
			done3, _ := r2.schedule("other.example", false)
			waitDone(t, clock, done3)
			if waited := clock.Now().Sub(start); waited != time.Second {
				t.Errorf("waited %s for a claim that never ended; want the budget, 1s", waited)
			}
			if n := f2.count("other.example"); n != 0 {
				t.Errorf("resolved other.example (%d queries) while another holder's claim stood", n)
			}
			if _, ok := r2.Cached("other.example"); ok {
				t.Error("other.example has an answer nobody resolved")
			}
			clock.Advance(claimFor) // the dead holder's claim lapses
			done4, _ := r2.schedule("other.example", false)
			waitDone(t, clock, done4)
			if n := f2.count("other.example"); n == 0 {
				t.Error("other.example not resolved once the claim lapsed")
			}
			if _, ok := r2.Cached("other.example"); !ok {
				t.Error("other.example has no answer after its resolution")
			}
			if ok, err := st1.ClaimRefresh(ctx, "other.example", "next/1/00", clock.Now(), clock.Now().Add(claimFor)); !ok || err != nil {
				t.Errorf("the claim was not released after the resolution: ClaimRefresh = %v, %v", ok, err)
			}
		})
	}
}
