package policyd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/servetest"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func TestLookup(t *testing.T) {
	snap := NewSnapshot([]Override{
		{Key: "example.com", Policy: "encrypt"},
		{Key: ".corp.example", Policy: "verify match=hostname"},
		{Key: "b.corp.example", Policy: "secure"},
		{Key: ".example.org", Policy: "dane"},
		{Key: "[mx.example.net]:587", Policy: "encrypt protocols=>=TLSv1.2"},
		{Key: "[mx.example.net]", Policy: "fingerprint match=3D:95:34:51:24:66:33:B9:D2:40:99:C0:C1:17:0B:D1"},
		{Key: "bücher.example", Policy: "encrypt"},
		{Key: "relay.example:2525", Policy: "none"},
		{Key: "Upper.Example", Policy: "ENCRYPT  ciphers=HIGH"},
	}, "may")
	tests := []struct {
		key        string
		value      string
		rule       string
		matchedKey string
	}{
		{"example.com", "encrypt", RuleExact, "example.com"},
		{"EXAMPLE.COM", "encrypt", RuleExact, "example.com"},
		{"sub.example.com", "may", RuleDefault, ""}, // no .example.com override
		{"corp.example", "may", RuleDefault, ""},    // .corp.example is subdomains only
		{"a.corp.example", "verify match=hostname", RuleWildcard, ".corp.example"},
		{"a.b.corp.example", "verify match=hostname", RuleWildcard, ".corp.example"},
		{"b.corp.example", "secure", RuleExact, "b.corp.example"},
		{"A.B.Corp.Example", "verify match=hostname", RuleWildcard, ".corp.example"},
		{".corp.example", "verify match=hostname", RuleExact, ".corp.example"}, // Postfix's own parent query
		{".x.corp.example", "verify match=hostname", RuleWildcard, ".corp.example"},
		{"example.org", "may", RuleDefault, ""},
		{"mx.example.org", "dane", RuleWildcard, ".example.org"},
		{"[mx.example.net]:587", "encrypt protocols=>=TLSv1.2", RuleExact, "[mx.example.net]:587"},
		{"[MX.example.net]", "fingerprint match=3D:95:34:51:24:66:33:B9:D2:40:99:C0:C1:17:0B:D1", RuleExact, "[mx.example.net]"},
		{"[mx.example.net]:25", "may", RuleDefault, ""},
		{"[a.example.org]", "may", RuleDefault, ""}, // bracketed: no wildcard
		{"[a.example.org]:25", "may", RuleDefault, ""},
		{"a.example.org:25", "may", RuleDefault, ""}, // host:port: exact only
		{"relay.example:2525", "none", RuleExact, "relay.example:2525"},
		{"bücher.example", "encrypt", RuleExact, "xn--bcher-kva.example"},
		{"BÜCHER.example", "encrypt", RuleExact, "xn--bcher-kva.example"},
		{"xn--bcher-kva.example", "encrypt", RuleExact, "xn--bcher-kva.example"},
		{"upper.example", "encrypt ciphers=high", RuleExact, "upper.example"},
		{"", "may", RuleDefault, ""},
		{"garbage key with spaces", "may", RuleDefault, ""},
		{strings.Repeat("a.", 200) + "corp.example", "verify match=hostname", RuleWildcard, ".corp.example"},
	}
	for _, tt := range tests {
		r := snap.Lookup(tt.key, t0)
		if !r.Found || r.Value != tt.value || r.Rule != tt.rule || r.Key != tt.matchedKey || r.Expired != nil {
			t.Errorf("Lookup(%q) = %+v, want value %q rule %s key %q", tt.key, r, tt.value, tt.rule, tt.matchedKey)
		}
	}
}

func TestLookupNoDefault(t *testing.T) {
	snap := NewSnapshot([]Override{{Key: ".example.com", Policy: "encrypt"}}, "")
	if r := snap.Lookup("example.com", t0); r.Found || r.Rule != RuleNotFound || r.Value != "" {
		t.Errorf("Lookup(example.com) = %+v, want notfound", r)
	}
	if r := snap.Lookup("a.example.com", t0); !r.Found || r.Rule != RuleWildcard {
		t.Errorf("Lookup(a.example.com) = %+v, want wildcard", r)
	}
	var nilSnap *Snapshot
	if r := nilSnap.Lookup("example.com", t0); r.Found || r.Rule != RuleNotFound || nilSnap.Len() != 0 {
		t.Errorf("nil snapshot Lookup = %+v", r)
	}
}

func TestLookupExpired(t *testing.T) {
	snap := NewSnapshot([]Override{
		{Key: "a.corp.example", Policy: "secure", Expires: t0},                       // expires exactly now
		{Key: ".corp.example", Policy: "encrypt", Expires: t0.Add(time.Hour)},        // still valid
		{Key: "old.example", Policy: "encrypt", Expires: t0.Add(-time.Hour)},         // expired
		{Key: ".old.example", Policy: "verify", Expires: t0.Add(-time.Minute)},       // expired
		{Key: "keep.example", Policy: "dane", Expires: t0.Add(time.Nanosecond)},      // still valid
		{Key: "never.example", Policy: "dane-only", Expires: time.Time{}},            // never
		{Key: "[mx.old.example]:25", Policy: "encrypt", Expires: t0.Add(-time.Hour)}, // expired
	}, "may")
	tests := []struct {
		key, value, rule string
		expired          []string
	}{
		{"a.corp.example", "encrypt", RuleWildcard, []string{"a.corp.example"}},
		{"x.a.corp.example", "encrypt", RuleWildcard, nil}, // .a.corp.example does not exist
		{"old.example", "may", RuleDefault, []string{"old.example"}},
		{"x.old.example", "may", RuleDefault, []string{".old.example"}},
		{"keep.example", "dane", RuleExact, nil},
		{"never.example", "dane-only", RuleExact, nil},
		{"[mx.old.example]:25", "may", RuleDefault, []string{"[mx.old.example]:25"}},
	}
	for _, tt := range tests {
		r := snap.Lookup(tt.key, t0)
		if r.Value != tt.value || r.Rule != tt.rule || !slices.Equal(r.Expired, tt.expired) {
			t.Errorf("Lookup(%q) = %+v, want value %q rule %s expired %q", tt.key, r, tt.value, tt.rule, tt.expired)
		}
	}
	// An hour earlier, nothing had expired.
	if r := snap.Lookup("old.example", t0.Add(-2*time.Hour)); r.Value != "encrypt" || r.Expired != nil {
		t.Errorf("before expiry: %+v", r)
	}
	snap2 := NewSnapshot([]Override{{Key: "gone.example", Policy: "encrypt", Expires: t0}}, "")
	if r := snap2.Lookup("gone.example", t0); r.Found || r.Rule != RuleNotFound || len(r.Expired) != 1 {
		t.Errorf("expired without default: %+v", r)
	}
}

func TestNewSnapshotNormalises(t *testing.T) {
	snap := NewSnapshot([]Override{
		{Key: "Example.COM", Policy: "encrypt"},
		{Key: "example.com", Policy: "Secure   match=nexthop"}, // same key, later wins
		{Key: "bad key", Policy: "encrypt"},
		{Key: "ok.example", Policy: "encrypt protocols=TLSv9"}, // kept verbatim, reported
	}, "MAY")
	if snap.Len() != 2 {
		t.Errorf("Len = %d, want 2", snap.Len())
	}
	if r := snap.Lookup("example.com", t0); r.Value != "secure match=nexthop" {
		t.Errorf("Lookup(example.com) = %+v", r)
	}
	if r := snap.Lookup("ok.example", t0); r.Value != "encrypt protocols=TLSv9" {
		t.Errorf("invalid value not kept verbatim: %+v", r)
	}
	if r := snap.Lookup("other.example", t0); r.Value != "may" || snap.Default() != "may" {
		t.Errorf("default not normalised: %+v", r)
	}
	inv := snap.Invalid()
	if len(inv) != 2 || !strings.Contains(inv[0], "bad key") || !strings.Contains(inv[1], "ok.example") {
		t.Errorf("Invalid() = %q", inv)
	}
}

func TestLookupAllocs(t *testing.T) {
	snap := NewSnapshot([]Override{
		{Key: ".corp.example", Policy: "encrypt"},
		{Key: "example.com", Policy: "verify"},
	}, "may")
	for _, key := range []string{"example.com", "A.B.Corp.Example", "miss.example.net", "[mx.example.com]:25"} {
		allocs := testing.AllocsPerRun(100, func() {
			if r := snap.Lookup(key, t0); !r.Found {
				t.Fatal("not found")
			}
		})
		if allocs != 0 {
			t.Errorf("Lookup(%q) allocates %v times, want 0", key, allocs)
		}
	}
	b := []byte("a.b.corp.example")
	if allocs := testing.AllocsPerRun(100, func() { snap.lookupBytes(b, 0) }); allocs != 0 {
		t.Errorf("lookupBytes allocates %v times, want 0", allocs)
	}
}

// fakeSource is a Source whose version, overrides and errors tests set.
type fakeSource struct {
	mu       sync.Mutex
	version  uint64
	ovs      []Override
	err      error
	versions int // calls to Version
	loads    int // calls to Overrides
}

func (f *fakeSource) Version(ctx context.Context) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.versions++
	return f.version, f.err
}

func (f *fakeSource) Overrides(ctx context.Context, add func(Override)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loads++
	if f.err != nil {
		return f.err
	}
	for _, o := range f.ovs {
		add(o)
	}
	return nil
}

func (f *fakeSource) set(version uint64, ovs []Override, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.version, f.ovs, f.err = version, ovs, err
}

func (f *fakeSource) counts() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.versions, f.loads
}

// stepWatch makes tab's Watch poll only when the returned step is called,
// and step return only once that poll has finished; wait returns once
// Watch's initial poll has finished. No sleeping.
func stepWatch(tab *Table) (step, wait func()) {
	tick := make(chan time.Time)
	polled := make(chan struct{})
	tab.newTicker = func(time.Duration) (<-chan time.Time, func()) { return tick, func() {} }
	tab.polled = func() { polled <- struct{}{} }
	return func() { tick <- time.Time{}; <-polled }, func() { <-polled }
}

func TestTableWatch(t *testing.T) {
	src := &fakeSource{}
	src.set(1, []Override{{Key: "example.com", Policy: "encrypt"}}, nil)
	tab := NewTable("may")
	if tab.Load() != nil {
		t.Fatal("new table has a snapshot")
	}
	poll, initial := stepWatch(tab)
	var logs servetest.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tab.Watch(ctx, src, time.Second, log) }()
	value := func(key string) string { return tab.Load().Lookup(key, t0).Value }

	initial()
	if got := value("example.com"); got != "encrypt" {
		t.Fatalf("after initial load: %q", got)
	}
	first := tab.Load()
	poll() // same version: no reload
	if tab.Load() != first {
		t.Error("reloaded although the version did not change")
	}
	if _, loads := src.counts(); loads != 1 {
		t.Errorf("Overrides called %d times, want 1", loads)
	}

	src.set(2, []Override{{Key: "example.com", Policy: "secure"}}, nil)
	poll()
	if got := value("example.com"); got != "secure" {
		t.Errorf("after version change: %q", got)
	}

	// The store breaks: keep serving the last snapshot.
	src.set(3, []Override{{Key: "example.com", Policy: "none"}}, errors.New("database is locked"))
	poll()
	poll()
	poll()
	if got := value("example.com"); got != "secure" {
		t.Errorf("during outage: %q, want last good value", got)
	}
	src.set(3, []Override{{Key: "example.com", Policy: "dane"}}, nil)
	poll()
	if got := value("example.com"); got != "dane" {
		t.Errorf("after recovery: %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watch returned %v", err)
	}
	out := logs.String()
	if n := strings.Count(out, "level=ERROR"); n != 1 {
		t.Errorf("logged %d errors for one outage, want 1:\n%s", n, out)
	}
	for _, want := range []string{"database is locked", "policy source recovered", "failures=3"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// TestTableWatchWake: a wake-up polls at once, with the ticker never
// firing (an hour), and the ticker still polls (the fallback).
func TestTableWatchWake(t *testing.T) {
	src := &fakeSource{}
	src.set(1, []Override{{Key: "example.com", Policy: "encrypt"}}, nil)
	tab := NewTable("may")
	poll, polled := stepWatch(tab) // polled waits for the end of a poll
	wake := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tab.WatchWake(ctx, src, time.Hour, wake, nil) }()
	polled() // the initial load
	value := func() string { return tab.Load().Lookup("example.com", t0).Value }
	src.set(2, []Override{{Key: "example.com", Policy: "secure"}}, nil)
	select {
	case wake <- struct{}{}:
	case <-time.After(10 * time.Second):
		t.Fatal("WatchWake does not take wake-ups")
	}
	polled()
	if got := value(); got != "secure" {
		t.Errorf("after a wake-up: %q, want secure", got)
	}
	src.set(3, []Override{{Key: "example.com", Policy: "dane"}}, nil)
	poll()
	if got := value(); got != "dane" {
		t.Errorf("after a tick: %q, want dane", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("WatchWake returned %v", err)
	}
}

func TestTableWatchStartsBroken(t *testing.T) {
	src := &fakeSource{}
	src.set(1, nil, errors.New("no such table"))
	tab := NewTable("may")
	poll, initial := stepWatch(tab)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tab.Watch(ctx, src, time.Second, nil) }()
	initial()
	poll()
	if tab.Load() != nil {
		t.Error("a snapshot appeared although loading failed")
	}
	src.set(1, []Override{{Key: "a.example", Policy: "encrypt"}}, nil)
	poll()
	if r := tab.Load().Lookup("a.example", t0); r.Value != "encrypt" {
		t.Errorf("after recovery: %+v", r)
	}
	cancel()
	<-done
	if err := tab.Watch(context.Background(), src, 0, nil); err == nil {
		t.Error("Watch with a zero interval succeeded")
	}
}

// TestTableWatchRealTicker runs Watch with the real clock at a tiny
// interval and waits for the change by polling the table, not by sleeping
// a fixed time.
func TestTableWatchRealTicker(t *testing.T) {
	src := &fakeSource{}
	src.set(1, []Override{{Key: "a.example", Policy: "encrypt"}}, nil)
	tab := NewTable("")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tab.Watch(ctx, src, time.Millisecond, nil)
	waitFor(t, func() bool { return tab.Load().Lookup("a.example", t0).Value == "encrypt" })
	src.set(2, []Override{{Key: "a.example", Policy: "secure"}}, nil)
	waitFor(t, func() bool { return tab.Load().Lookup("a.example", t0).Value == "secure" })
}

// waitFor polls cond until it holds, yielding between tries; it fails the
// test after 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		<-tick.C
	}
}

func TestSnapshotConcurrentReload(t *testing.T) {
	tab := NewTable("may")
	tab.Store(NewSnapshot(nil, "may"))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := tab.Load().Lookup("x.example.com", t0)
				if !r.Found {
					t.Error("lookup during reload found nothing")
					return
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		tab.Store(NewSnapshot([]Override{{Key: ".example.com", Policy: fmt.Sprintf("encrypt ciphers=%s", []string{"high", "medium"}[i%2])}}, "may"))
	}
	close(stop)
	wg.Wait()
}

// TestTableWatchAfterReload: a Watch started after Reload (as the daemon
// starts) does not load the same version again, and still follows
// changes; after Store, Watch loads at once.
func TestTableWatchAfterReload(t *testing.T) {
	src := &fakeSource{}
	src.set(7, []Override{{Key: "example.com", Policy: "encrypt"}}, nil)
	tab := NewTable("may")
	if v, err := tab.Reload(context.Background(), src); err != nil || v != 7 {
		t.Fatalf("Reload: %d, %v", v, err)
	}
	poll, initial := stepWatch(tab)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tab.Watch(ctx, src, time.Second, nil) }()
	initial()
	poll()
	if _, loads := src.counts(); loads != 1 {
		t.Errorf("Overrides called %d times after Reload and two polls of Watch, want 1", loads)
	}
	src.set(8, []Override{{Key: "example.com", Policy: "secure"}}, nil)
	poll()
	if got := tab.Load().Lookup("example.com", t0).Value; got != "secure" {
		t.Errorf("after a change: %q", got)
	}
	cancel()
	<-done

	// Store (a snapshot from elsewhere) makes the next Watch load.
	tab.Store(NewSnapshot(nil, "may"))
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- tab.Watch(ctx, src, time.Second, nil) }()
	initial()
	if got := tab.Load().Lookup("example.com", t0).Value; got != "secure" {
		t.Errorf("Watch after Store did not load: %q", got)
	}
	cancel()
	<-done
}

func TestOverrideExpired(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		exp  time.Time
		want bool
	}{{time.Time{}, false}, {now.Add(time.Second), false}, {now, true}, {now.Add(-time.Second), true}} {
		if got := (Override{Key: "a.example", Policy: "encrypt", Expires: c.exp}).Expired(now); got != c.want {
			t.Errorf("Expires %v: Expired = %v, want %v", c.exp, got, c.want)
		}
	}
}
