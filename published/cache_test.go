package published

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/discover"
)

// TestPolicyCache walks the RFC 8461 caching rules on one destination: a
// policy is used for its max_age without refetching while the TXT id is
// unchanged; a new id refetches; a failed refetch and a vanished TXT
// record keep the unexpired policy (§5.1); an expired policy is not used.
func TestPolicyCache(t *testing.T) {
	e := newEnv(t)
	z := e.zone
	z.Add(t, "cache.example. 300 IN MX 10 mx1.cache.example.", "mx1.cache.example. 300 IN A 127.0.0.1")
	e.sts("cache.example", "1")
	e.policy("cache.example", "version: STSv1\nmode: enforce\nmx: mx1.cache.example\nmax_age: 86400\n")
	r := e.resolver(nil)
	const first = "secure match=mx1.cache.example servername=hostname"

	res := resolve(t, r, "cache.example")
	wantAnswer(t, res, SourceMTASTS, first)
	if e.fetchCount("cache.example") != 1 || z.Count("_mta-sts.cache.example", dns.TypeTXT) != 1 {
		t.Fatalf("first resolution: %d fetches, %d TXT queries", e.fetchCount("cache.example"), z.Count("_mta-sts.cache.example", dns.TypeTXT))
	}
	// From memory: no query at all, and the cache age shows.
	e.clock.Advance(time.Minute)
	res = r.Lookup(context.Background(), "cache.example")
	wantAnswer(t, res, SourceMTASTS, first)
	if res.CacheAge != time.Minute || res.Pending || z.Count("_mta-sts.cache.example", dns.TypeTXT) != 1 {
		t.Errorf("cached lookup: age %s pending %v, %d TXT queries", res.CacheAge, res.Pending, z.Count("_mta-sts.cache.example", dns.TypeTXT))
	}

	// The TXT TTL (300 s) has passed: the record is asked again, the id is
	// the same, the policy is not fetched again.
	e.clock.Advance(10 * time.Minute)
	res = resolve(t, r, "cache.example")
	wantAnswer(t, res, SourceMTASTS, first)
	if e.fetchCount("cache.example") != 1 || z.Count("_mta-sts.cache.example", dns.TypeTXT) != 2 ||
		!stsEv(res).Fetched.Equal(e.clock.Now().Add(-11*time.Minute)) {
		t.Errorf("same id: %d fetches, %d TXT queries, fetched %s", e.fetchCount("cache.example"),
			z.Count("_mta-sts.cache.example", dns.TypeTXT), stsEv(res).Fetched)
	}

	// A new id: fetched again, the new policy answers.
	z.Remove("_mta-sts.cache.example", dns.TypeTXT)
	e.sts("cache.example", "2")
	e.policy("cache.example", "version: STSv1\nmode: enforce\nmx: *.cache.example\nmax_age: 86400\n")
	e.clock.Advance(10 * time.Minute)
	res = resolve(t, r, "cache.example")
	const second = "secure match=.cache.example servername=hostname"
	wantAnswer(t, res, SourceMTASTS, second)
	if e.fetchCount("cache.example") != 2 || stsEv(res).ID != "2" {
		t.Errorf("new id: %d fetches, evidence %+v", e.fetchCount("cache.example"), res.Evidence.MTASTS)
	}
	expires := stsEv(res).Expires

	// Another new id, but the fetch fails: the unexpired policy stays.
	z.Remove("_mta-sts.cache.example", dns.TypeTXT)
	e.sts("cache.example", "3")
	e.setStatus("cache.example", http.StatusInternalServerError)
	e.clock.Advance(10 * time.Minute)
	res = resolve(t, r, "cache.example")
	wantAnswer(t, res, SourceMTASTS, second)
	if e.fetchCount("cache.example") != 3 || stsEv(res).ID != "2" || !hasNote(res, "the policy fetch failed; the cached policy id 2 is used") {
		t.Errorf("failed refetch: %d fetches, evidence %+v, notes %q", e.fetchCount("cache.example"), res.Evidence.MTASTS, res.Evidence.Notes)
	}

	// The TXT record disappears while the policy is unexpired: kept.
	z.Remove("_mta-sts.cache.example", dns.TypeTXT)
	e.clock.Advance(10 * time.Minute)
	res = resolve(t, r, "cache.example")
	wantAnswer(t, res, SourceMTASTS, second)
	if !hasNote(res, "the _mta-sts TXT record is gone; the cached policy id 2 is used") {
		t.Errorf("vanished TXT: notes %q", res.Evidence.Notes)
	}

	// Expired: a lookup no longer serves it even before the refresh
	// finishes, and the refresh finds nothing.
	e.clock.Advance(expires.Sub(e.clock.Now()))
	res = r.Lookup(context.Background(), "cache.example")
	wantAnswer(t, res, SourceNone, "")
	if !hasNote(res, "has expired") {
		t.Errorf("expired lookup: notes %q", res.Evidence.Notes)
	}
	r.Wait()
	res = r.Lookup(context.Background(), "cache.example")
	wantAnswer(t, res, SourceNone, "")
	if !hasNote(res, "expired at") || res.Evidence.MTASTS != nil {
		t.Errorf("after expiry: %+v", res.Evidence)
	}
}

// stsEv is the MTA-STS evidence of res, or an empty one.
func stsEv(res Result) STSEvidence {
	if res.Evidence.MTASTS == nil {
		return STSEvidence{}
	}
	return *res.Evidence.MTASTS
}

// TestDNSCache: answers are kept for their TTL, negative ones for the SOA's
// negative TTL (RFC 2308 §5); a lookup after the TTL resolves again in the
// background and keeps answering meanwhile.
func TestDNSCache(t *testing.T) {
	e := newEnv(t)
	z := e.zone
	z.Add(t, "ttl.example. 3600 IN SOA ns.ttl.example. host.ttl.example. 1 3600 600 86400 600",
		"ttl.example. 300 IN MX 10 mx1.ttl.example.", "mx1.ttl.example. 300 IN A 127.0.0.1")
	r := e.resolver(nil)
	counts := func() (int, int, int) {
		return z.Count("ttl.example", dns.TypeMX), z.Count("_mta-sts.ttl.example", dns.TypeTXT), z.Count("nx.ttl.example", dns.TypeMX)
	}
	resolve(t, r, "ttl.example")
	resolve(t, r, "nx.ttl.example")
	if mx, txt, nx := counts(); mx != 1 || txt != 1 || nx != 1 {
		t.Fatalf("first: %d MX, %d TXT, %d NXDOMAIN queries", mx, txt, nx)
	}
	e.clock.Advance(200 * time.Second)
	resolve(t, r, "ttl.example")
	resolve(t, r, "nx.ttl.example")
	if mx, txt, nx := counts(); mx != 1 || txt != 1 || nx != 1 {
		t.Errorf("within TTLs: %d MX, %d TXT, %d NXDOMAIN queries; want all cached", mx, txt, nx)
	}
	e.clock.Advance(200 * time.Second) // 400 s: MX expired, negative answers (600 s) not
	res := r.Lookup(context.Background(), "ttl.example")
	if res.Pending || res.Source != SourceNone {
		t.Errorf("due lookup must answer from memory: %+v", res)
	}
	r.Wait() // the lookup queued a background resolution
	if mx, txt, nx := counts(); mx != 2 || txt != 1 || nx != 1 {
		t.Errorf("at 400 s: %d MX, %d TXT, %d NXDOMAIN queries; want 2 1 1", mx, txt, nx)
	}
	e.clock.Advance(300 * time.Second) // 700 s
	resolve(t, r, "ttl.example")
	resolve(t, r, "nx.ttl.example")
	if mx, txt, nx := counts(); mx != 3 || txt != 2 || nx != 2 {
		t.Errorf("at 700 s: %d MX, %d TXT, %d NXDOMAIN queries; want 3 2 2", mx, txt, nx)
	}
	if res := resolve(t, r, "nx.ttl.example"); !hasNote(res, "does not exist (NXDOMAIN)") {
		t.Errorf("NXDOMAIN notes: %q", res.Evidence.Notes)
	}
}

// TestResolverDown: a resolver that does not answer gives no answer for a
// new destination (never a failure), and keeps serving a cached policy
// and a cached DANE answer.
func TestResolverDown(t *testing.T) {
	e := newEnv(t)
	z := e.zone
	z.Add(t, "down.example. 300 IN MX 10 mx1.down.example.", "mx1.down.example. 300 IN A 127.0.0.1")
	e.sts("down.example", "1")
	e.policy("down.example", "version: STSv1\nmode: enforce\nmx: mx1.down.example\nmax_age: 86400\n")
	z.Sign("dane.example")
	z.Add(t, "dane.example. 300 IN MX 10 mx1.dane.example.", "mx1.dane.example. 300 IN A 127.0.0.1",
		"_25._tcp.mx1.dane.example. 300 IN TLSA "+tlsaData)
	r := e.resolver(func(c *Config) {
		c.DNS = &discover.Resolver{Servers: []string{e.dns}, Timeout: 200 * time.Millisecond}
	})
	wantAnswer(t, resolve(t, r, "down.example"), SourceMTASTS, "secure match=mx1.down.example servername=hostname")
	wantAnswer(t, resolve(t, r, "dane.example"), SourceDANE, "dane-only")

	for _, n := range []string{"down.example", "_mta-sts.down.example", "new.example", "dane.example"} {
		z.Drop(n, true)
	}
	e.clock.Advance(10 * time.Minute)
	res := resolve(t, r, "new.example")
	wantAnswer(t, res, SourceNone, "")
	if !hasNote(res, "MX lookup failed") || !hasNote(res, "no answer from") {
		t.Errorf("new.example notes: %q", res.Evidence.Notes)
	}
	res = resolve(t, r, "down.example")
	wantAnswer(t, res, SourceMTASTS, "secure match=mx1.down.example servername=hostname")
	if !hasNote(res, "the TXT lookup failed; the cached policy id 1 is used") {
		t.Errorf("down.example notes: %q", res.Evidence.Notes)
	}
	res = resolve(t, r, "dane.example")
	wantAnswer(t, res, SourceDANE, "dane-only")
	if !hasNote(res, "the DANE answer of") {
		t.Errorf("dane.example notes: %q", res.Evidence.Notes)
	}
	st, _ := r.state("new.example")
	if d := st.refreshAt.Sub(e.clock.Now()); d < minRefresh || d > retryDelay {
		t.Errorf("after a failure the next try is in %s, want %s to %s", d, minRefresh, retryDelay)
	}
	// A DANE answer is kept for maxStale at most.
	e.clock.Advance(maxStale)
	wantAnswer(t, resolve(t, r, "dane.example"), SourceNone, "")
}

// fakeDNS answers from canned records, counts queries, and blocks the
// names for which block returns true until release is closed.
type fakeDNS struct {
	mu        sync.Mutex
	rrs       map[qkey][]dns.RR
	ad        map[string]bool
	block     func(name string) bool
	release   chan struct{}
	blocked   chan string
	active    int
	maxActive int
	queries   map[string]int
	fail      bool
}

func newFakeDNS(t *testing.T, ad bool, lines ...string) *fakeDNS {
	f := &fakeDNS{rrs: map[qkey][]dns.RR{}, ad: map[string]bool{}, release: make(chan struct{}),
		blocked: make(chan string, 100), queries: map[string]int{}}
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatal(err)
		}
		n := strings.TrimSuffix(rr.Header().Name, ".")
		f.rrs[qkey{n, rr.Header().Rrtype}] = append(f.rrs[qkey{n, rr.Header().Rrtype}], rr)
		f.ad[n] = ad
	}
	return f
}

func (f *fakeDNS) Lookup(ctx context.Context, name string, qtype uint16) (discover.Answer, error) {
	f.mu.Lock()
	f.queries[name]++
	f.active++
	f.maxActive = max(f.maxActive, f.active)
	blocks, fail := f.block != nil && f.block(name), f.fail
	rrs, ad := f.rrs[qkey{name, qtype}], f.ad[name]
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.active--
		f.mu.Unlock()
	}()
	if blocks {
		f.blocked <- name
		select {
		case <-f.release:
		case <-ctx.Done():
			return discover.Answer{}, ctx.Err()
		}
	}
	if fail {
		return discover.Answer{}, errors.New("fake: SERVFAIL")
	}
	return discover.Answer{Records: rrs, AD: ad, TTL: 300}, nil
}

func (f *fakeDNS) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries[name]
}

// daneZone is one DANE destination for the fakes.
var daneZone = []string{"cached.example. 300 IN MX 10 mx.cached.example.", "mx.cached.example. 300 IN A 127.0.0.1",
	"_25._tcp.mx.cached.example. 300 IN TLSA " + tlsaData}

// TestBurst: thousands of new destinations at once are bounded by the
// workers and the queue, and never hold up a destination already cached:
// while every worker is blocked in DNS, the cached answer still comes from
// memory.
func TestBurst(t *testing.T) {
	f := newFakeDNS(t, true, daneZone...)
	f.block = func(n string) bool { return strings.HasSuffix(n, ".burst.example") }
	clock := newFakeClock(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	const workers, queue = 4, 16
	r, err := New(Config{DNS: f, TrustAD: true, Clock: clock, Workers: workers, Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	defer r.Close()
	defer close(f.release)
	wantAnswer(t, resolve(t, r, "cached.example"), SourceDANE, "dane-only")
	cachedQueries := f.count("cached.example")

	// Lookups of new names with a context that has ended do not wait for
	// the budget: each returns at once, pending, and its resolution is
	// queued or refused.
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	const burst = 3000
	accepted := 0
	for i := range burst {
		res := r.Lookup(gone, "n"+strconv.Itoa(i)+".burst.example")
		if !res.Pending || res.Source != SourceNone {
			t.Fatalf("burst lookup %d: %+v", i, res)
		}
		if !hasNote(res, "queue is full") {
			accepted++
		}
		if i%100 == 0 {
			wantAnswer(t, r.Lookup(context.Background(), "cached.example"), SourceDANE, "dane-only")
		}
	}
	// Every worker is now blocked in DNS.
	for range workers {
		<-f.blocked
	}
	if accepted < queue || accepted > workers+queue {
		t.Errorf("%d of %d new destinations were queued, want %d to %d", accepted, burst, queue, workers+queue)
	}
	res := r.Lookup(context.Background(), "cached.example")
	wantAnswer(t, res, SourceDANE, "dane-only")
	if res.Pending || f.count("cached.example") != cachedQueries {
		t.Errorf("cached lookup during the burst: %+v, %d queries (want %d)", res, f.count("cached.example"), cachedQueries)
	}
	f.mu.Lock()
	maxActive := f.maxActive
	f.mu.Unlock()
	if maxActive > workers {
		t.Errorf("%d DNS queries at once, want at most %d workers", maxActive, workers)
	}
}

// TestFirstContactBudget: a new destination waits for its resolution at
// most the budget, then gets no answer while the resolution finishes in
// the background; the next lookup has the answer.
func TestFirstContactBudget(t *testing.T) {
	f := newFakeDNS(t, true, append(daneZone, "slow.burst.example. 300 IN MX 10 mx.cached.example.")...)
	f.block = func(n string) bool { return n == "slow.burst.example" }
	clock := newFakeClock(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	r, err := New(Config{DNS: f, TrustAD: true, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	defer r.Close()

	// Not blocked: answered within the budget, no timer fires.
	wantAnswer(t, r.Lookup(context.Background(), "cached.example"), SourceDANE, "dane-only")

	// The lookup above left its budget timer behind (its resolution won
	// the race), so wait for one more than that: waiting for "one timer"
	// could return before the slow lookup's own timer exists, and then
	// the Advance below would move the clock past it unseen.
	timers := clock.timerCount()
	got := make(chan Result, 1)
	go func() { got <- r.Lookup(context.Background(), "slow.burst.example") }()
	<-f.blocked
	clock.waitTimers(t, timers+1)
	clock.Advance(DefaultBudget - time.Millisecond)
	select {
	case res := <-got:
		t.Fatalf("answered before the budget ran out: %+v", res)
	default:
	}
	clock.Advance(time.Millisecond)
	res := <-got
	if !res.Pending || res.Source != SourceNone || !hasNote(res, "not resolved within 2s") {
		t.Errorf("after the budget: %+v", res)
	}
	// The budget is spent once per resolution, not once per lookup: while
	// the resolution still runs, the next lookup answers at once (with a
	// resolver that never answers, every delivery to the destination
	// would otherwise wait the budget again). The fake clock fires no
	// timer, so a wait here would hang until the test's deadline.
	go func() { got <- r.Lookup(context.Background(), "slow.burst.example") }()
	if res := <-got; !res.Pending || res.Source != SourceNone {
		t.Errorf("second lookup during the resolution: %+v", res)
	}
	close(f.release)
	r.Wait()
	res = r.Lookup(context.Background(), "slow.burst.example")
	wantAnswer(t, res, SourceDANE, "dane-only")
	if res.Pending {
		t.Errorf("resolved in the background, still pending: %+v", res)
	}
}

// TestPersist: a second Resolver on the same store answers from memory at
// once after Load, with no DNS, and refuses stored entries that do not
// parse or validate.
func TestPersist(t *testing.T) {
	e := newEnv(t)
	e.zone.Add(t, "sts.example. 300 IN MX 10 mx1.sts.example.", "mx1.sts.example. 300 IN A 127.0.0.1")
	e.sts("sts.example", "7")
	e.policy("sts.example", "version: STSv1\nmode: enforce\nmx: mx1.sts.example\nmax_age: 86400\n")
	ms := &MemStore{}
	r1 := e.resolver(func(c *Config) { c.Store = ms })
	wantAnswer(t, resolve(t, r1, "sts.example"), SourceMTASTS, "secure match=mx1.sts.example servername=hostname")
	if src, pol, ok := ms.Answer("sts.example"); !ok || src != "mta-sts" || pol != "secure match=mx1.sts.example servername=hostname" {
		t.Errorf("stored answer: %q %q %v", src, pol, ok)
	}
	r1.Close()

	ctx := context.Background()
	ms.SavePublished(ctx, "garbage.example", "none", "", []byte("{not json"), time.Time{})                                                                         //nolint:errcheck // MemStore
	ms.SavePublished(ctx, "evil.example", "mta-sts", "secure match=a,b", []byte(`{"v":1,"result":{"source":"mta-sts","policy":"secure match=a,b"}}`), time.Time{}) //nolint:errcheck // MemStore
	f := newFakeDNS(t, false)
	f.fail = true
	e.clock.Advance(time.Minute)
	r2, err := New(Config{DNS: f, Store: ms, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	n, err := r2.Load(ctx)
	if n != 1 || err == nil || !strings.Contains(err.Error(), "garbage.example") || !strings.Contains(err.Error(), "evil.example") {
		t.Errorf("Load = %d, %v; want 1 loaded and both bad entries named", n, err)
	}
	r2.Start()
	defer r2.Close()
	res := r2.Lookup(ctx, "sts.example")
	wantAnswer(t, res, SourceMTASTS, "secure match=mx1.sts.example servername=hostname")
	if res.CacheAge != time.Minute || res.Evidence.MTASTS == nil || stsEv(res).ID != "7" || f.count("sts.example") != 0 {
		t.Errorf("after restart: age %s evidence %+v, %d queries", res.CacheAge, res.Evidence.MTASTS, f.count("sts.example"))
	}
	if res := r2.Lookup(ctx, "evil.example"); res.Source != SourceNone || res.Policy != "" {
		t.Errorf("a stored answer that does not validate was loaded: %+v", res)
	}
}

// TestRefreshActive: only destinations with recent deliveries are
// refreshed without a lookup; their policy is fetched again before it
// expires; a failed refresh is logged with its reason.
func TestRefreshActive(t *testing.T) {
	e := newEnv(t)
	for _, d := range []string{"active.example", "idle.example"} {
		e.zone.Add(t, d+". 300 IN MX 10 mx1."+d+".", "mx1."+d+". 300 IN A 127.0.0.1")
		e.sts(d, "1")
		e.policy(d, "version: STSv1\nmode: enforce\nmx: mx1."+d+"\nmax_age: 86400\n")
	}
	var (
		mu    sync.Mutex
		since []time.Time
	)
	var logs bytes.Buffer
	r := e.resolver(func(c *Config) {
		c.Active = func(_ context.Context, s time.Time) ([]string, error) {
			mu.Lock()
			since = append(since, s)
			mu.Unlock()
			return []string{"active.example", "[relay.example]:25"}, nil
		}
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	resolve(t, r, "active.example")
	resolve(t, r, "idle.example")
	idleTXT := e.zone.Count("_mta-sts.idle.example", dns.TypeTXT)

	ctx := context.Background()
	if q, s, err := r.RefreshActive(ctx); q != 0 || s != 0 || err != nil {
		t.Errorf("nothing due yet: queued %d skipped %d, %v", q, s, err)
	}
	e.clock.Advance(10 * time.Minute) // TXT TTLs expired
	if q, _, err := r.RefreshActive(ctx); q != 1 || err != nil {
		t.Errorf("TTL due: queued %d, %v; want 1", q, err)
	}
	r.Wait()
	if n := e.zone.Count("_mta-sts.active.example", dns.TypeTXT); n != 2 || e.fetchCount("active.example") != 1 {
		t.Errorf("active.example: %d TXT queries, %d fetches; want 2, 1", n, e.fetchCount("active.example"))
	}
	mu.Lock()
	if len(since) != 2 || !since[1].Equal(e.clock.Now().Add(-DefaultRefreshWindow)) {
		t.Errorf("Active asked since %v, want now - 30 days", since)
	}
	mu.Unlock()

	// 13 h in, a 24 h policy is within half its max_age of expiry: fetched
	// again, the same id notwithstanding.
	e.clock.Advance(13 * time.Hour)
	e.setStatus("active.example", http.StatusServiceUnavailable)
	if q, _, _ := r.RefreshActive(ctx); q != 1 {
		t.Errorf("policy due: queued %d", q)
	}
	r.Wait()
	if e.fetchCount("active.example") != 2 {
		t.Errorf("active.example fetched %d times, want 2", e.fetchCount("active.example"))
	}
	if !strings.Contains(logs.String(), "HTTP 503") || !strings.Contains(logs.String(), "domain=active.example") {
		t.Errorf("refresh failure not logged with its reason:\n%s", logs.String())
	}
	wantAnswer(t, r.Lookup(ctx, "active.example"), SourceMTASTS, "secure match=mx1.active.example servername=hostname")

	// The destination without deliveries was never asked about again.
	if n := e.zone.Count("_mta-sts.idle.example", dns.TypeTXT); n != idleTXT || e.fetchCount("idle.example") != 1 {
		t.Errorf("idle.example: %d TXT queries (want %d), %d fetches (want 1)", n, idleTXT, e.fetchCount("idle.example"))
	}
}

// TestCloseKeepsState: a resolution cut short by Close stores nothing, so
// a restart does not start from an answer made of cancelled lookups.
func TestCloseKeepsState(t *testing.T) {
	f := newFakeDNS(t, true, daneZone...)
	ms := &MemStore{}
	clock := newFakeClock(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))
	r, err := New(Config{DNS: f, TrustAD: true, Clock: clock, Store: ms, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	wantAnswer(t, resolve(t, r, "cached.example"), SourceDANE, "dane-only")
	f.mu.Lock()
	f.block = func(n string) bool { return n == "cached.example" }
	f.mu.Unlock()
	clock.Advance(time.Hour)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if res := r.Lookup(gone, "cached.example"); res.Source != SourceDANE {
		t.Fatalf("due lookup: %+v", res)
	}
	<-f.blocked // the refresh is in DNS
	r.Close()
	if src, pol, _ := ms.Answer("cached.example"); src != "dane" || pol != "dane-only" {
		t.Errorf("after Close the store holds %q %q, want the DANE answer kept", src, pol)
	}
	if st, _ := r.state("cached.example"); st.result.Source != SourceDANE || st.failed {
		t.Errorf("after Close the cache holds %+v", st)
	}
}

// TestEvictStale: a destination no lookup has asked about for a day after
// its cache was due is forgotten, in memory and in the store, unless it
// holds an unexpired MTA-STS policy.
func TestEvictStale(t *testing.T) {
	e := newEnv(t)
	e.zone.Add(t, "cache.example. 300 IN MX 10 mx1.cache.example.", "mx1.cache.example. 300 IN A 127.0.0.1")
	e.sts("cache.example", "1")
	e.policy("cache.example", "version: STSv1\nmode: enforce\nmx: mx1.cache.example\nmax_age: 604800\n")
	ms := &MemStore{}
	r := e.resolver(func(c *Config) { c.Store = ms })
	resolve(t, r, "cache.example")
	resolve(t, r, "plain.example")
	ctx := context.Background()
	e.clock.Advance(maxStale) // plain.example: due after 5 min, so not yet a day past
	r.RefreshActive(ctx)      //nolint:errcheck // no Active
	if _, ok := r.Cached("plain.example"); !ok {
		t.Fatal("plain.example forgotten too early")
	}
	e.clock.Advance(10 * time.Minute)
	r.RefreshActive(ctx) //nolint:errcheck // no Active
	if _, ok := r.Cached("plain.example"); ok {
		t.Error("plain.example kept in memory")
	}
	if _, _, ok := ms.Answer("plain.example"); ok {
		t.Error("plain.example kept in the store")
	}
	res, ok := r.Cached("cache.example")
	if !ok || res.Source != SourceMTASTS {
		t.Errorf("cache.example with an unexpired policy: %+v, %v", res, ok)
	}
	e.clock.Advance(7 * 24 * time.Hour)
	r.RefreshActive(ctx) //nolint:errcheck // no Active
	if _, ok := r.Cached("cache.example"); ok {
		t.Error("cache.example kept after its policy expired")
	}
}
