package published

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtls/mailtls/mtasts"
	"github.com/mailtls/mailtls/policyd"
)

// Defaults of Config.
const (
	// DefaultBudget is how long a lookup for a destination seen for the
	// first time waits for its resolution. Postfix waits for a policy
	// lookup as for any table, and smtp(8) clients connect with
	// smtp_connect_timeout = 30 s; 2 s keeps first contact well inside that
	// and is enough for a warm resolver and one HTTPS fetch.
	DefaultBudget = 2 * time.Second
	// DefaultWorkers bounds concurrent resolutions.
	DefaultWorkers = 8
	// DefaultQueue bounds resolutions waiting for a worker; beyond it a
	// new destination gets no answer now and is tried at its next lookup.
	DefaultQueue = 1024
	// DefaultRefreshWindow: only destinations with deliveries this recent
	// are refreshed before their cache expires.
	DefaultRefreshWindow = 30 * 24 * time.Hour
	// DefaultFetchTimeout caps one policy fetch (RFC 8461 §3.3 asks for a
	// timeout; the body is capped at mtasts.MaxPolicySize).
	DefaultFetchTimeout = 10 * time.Second
	// resolveTimeout caps one whole resolution in the background.
	resolveTimeout = 30 * time.Second
	// refreshAhead is how long before expiry an active destination's
	// policy is fetched again, at most half its max_age.
	refreshAhead = 24 * time.Hour
)

// ErrConfig is wrapped by errors about a Config.
var ErrConfig = errors.New("published: invalid configuration")

// Clock is the time seam: tests use a fake that moves only when told.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// ActiveFunc returns the destinations with recorded deliveries since a
// time: the only ones refreshed proactively.
type ActiveFunc func(ctx context.Context, since time.Time) ([]string, error)

// Config configures a Resolver.
type Config struct {
	// DNS answers the queries; required.
	DNS DNS
	// Resolver names the DNS server in notes, e.g. "127.0.0.1:53".
	Resolver string
	// TrustAD: the AD bit means DNSSEC-validated (see ADTrusted).
	TrustAD bool
	// NoDANE and NoMTASTS turn a source off (--sources).
	NoDANE, NoMTASTS bool
	// RootCAs verifies policy hosts; nil means the system roots
	// (SSL_CERT_FILE and SSL_CERT_DIR as Go's crypto/x509 reads them).
	RootCAs *x509.CertPool
	// PolicyPort is the HTTPS port of policy hosts; 0 means 443.
	PolicyPort int
	// Dial connects to a policy host address; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// FetchTimeout caps a policy fetch; 0 means DefaultFetchTimeout.
	FetchTimeout time.Duration
	// Budget, Workers, Queue, RefreshWindow: 0 means the default.
	Budget        time.Duration
	Workers       int
	Queue         int
	RefreshWindow time.Duration
	// Active feeds proactive refresh; nil means none.
	Active ActiveFunc
	// Store persists the cache; nil means memory only.
	Store  Store
	Clock  Clock
	Logger *slog.Logger
}

// Resolver answers lookups from memory and resolves in the background.
type Resolver struct {
	dns          *dnsCache
	trustAD      bool
	noDANE       bool
	noMTASTS     bool
	resolverName string
	fetcher      mtasts.Fetcher
	dial         func(ctx context.Context, network, addr string) (net.Conn, error)
	budget       time.Duration
	window       time.Duration
	active       ActiveFunc
	store        Store
	clock        Clock
	log          *slog.Logger

	holder string // this daemon in refresh claims (SharedStore)

	entries entries // the lookup path reads only this, once loaded
	// loaded: every stored entry is in entries (Load has finished), or
	// there is no store. Until then a destination missing from entries is
	// read from the store (known).
	loaded atomic.Bool

	mu       sync.Mutex
	inflight map[string]*job
	queue    chan *job
	pending  sync.WaitGroup // jobs queued or running
	workers  sync.WaitGroup
	nworkers int
	stop     context.CancelFunc
	started  bool
	closed   bool
}

type job struct {
	domain string
	force  bool
	queued time.Time // when it was scheduled: an answer stored since is fresh
	done   chan struct{}
	// waitUntil ends the waits of lookups for a destination seen for the
	// first time: set by the first such lookup, to its start plus the
	// budget, so that the budget is spent once per resolution and not
	// once per lookup. Guarded by Resolver.mu.
	waitUntil time.Time
}

// New returns a Resolver; Start runs its workers.
func New(cfg Config) (*Resolver, error) {
	if cfg.DNS == nil {
		return nil, fmt.Errorf("%w: no DNS", ErrConfig)
	}
	def := func(v, d time.Duration) time.Duration {
		if v <= 0 {
			return d
		}
		return v
	}
	r := &Resolver{
		trustAD: cfg.TrustAD, noDANE: cfg.NoDANE, noMTASTS: cfg.NoMTASTS, resolverName: cfg.Resolver,
		budget: def(cfg.Budget, DefaultBudget), window: def(cfg.RefreshWindow, DefaultRefreshWindow),
		active: cfg.Active, store: cfg.Store, clock: cfg.Clock, log: cfg.Logger,
		dial: cfg.Dial, inflight: map[string]*job{},
	}
	if r.clock == nil {
		r.clock = realClock{}
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.dial == nil {
		r.dial = (&net.Dialer{}).DialContext
	}
	if r.resolverName == "" {
		r.resolverName = "in use"
	}
	workers, queue := cfg.Workers, cfg.Queue
	if workers <= 0 {
		workers = DefaultWorkers
	}
	if queue <= 0 {
		queue = DefaultQueue
	}
	r.loaded.Store(cfg.Store == nil)
	r.holder = holderName()
	r.queue = make(chan *job, queue)
	r.nworkers = workers
	r.dns = &dnsCache{dns: cfg.DNS, now: r.clock.Now, m: map[qkey]cachedAnswer{}}
	r.fetcher = mtasts.Fetcher{Port: cfg.PolicyPort, RootCAs: cfg.RootCAs, Timeout: def(cfg.FetchTimeout, DefaultFetchTimeout), Now: r.clock.Now}
	r.fetcher.DialContext = r.dialResolved
	return r, nil
}

// Start runs the workers until Close.
func (r *Resolver) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.closed {
		return
	}
	r.started = true
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.workers.Add(r.nworkers)
	for range r.nworkers {
		go r.worker(ctx)
	}
}

// Close stops the workers after the resolutions in progress; queued ones
// are dropped. Safe to call twice.
func (r *Resolver) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	started := r.started
	if r.stop != nil {
		r.stop()
	}
	r.mu.Unlock()
	if started {
		r.workers.Wait()
	}
	// Queued jobs are dropped: release their waiters.
	for {
		select {
		case j := <-r.queue:
			r.mu.Lock()
			delete(r.inflight, j.domain)
			r.mu.Unlock()
			close(j.done)
			r.pending.Done()
		default:
			return
		}
	}
}

func (r *Resolver) worker(ctx context.Context) {
	defer r.workers.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-r.queue:
			r.run(ctx, j)
		}
	}
}

// run resolves one destination, publishes the new state, persists it and
// releases whoever waits for it.
func (r *Resolver) run(ctx context.Context, j *job) {
	defer r.pending.Done()
	release := func() {
		r.mu.Lock()
		delete(r.inflight, j.domain)
		r.mu.Unlock()
		close(j.done)
	}
	prev, _, err := r.known(ctx, j.domain)
	if err != nil {
		// What the cache holds is unknown: a resolution now could replace
		// an unexpired MTA-STS policy (RFC 8461 §5.1) after a failed fetch.
		r.log.Error("published policy: not resolving while the cached entry cannot be read", "domain", j.domain, "error", err)
		release()
		return
	}
	if sh, ok := r.store.(SharedStore); ok {
		st, claimed := r.claim(ctx, sh, j, prev)
		if st != nil {
			r.entries.store(j.domain, st) // another daemon's answer
			r.log.Debug("published policy adopted from the shared cache", "domain", j.domain, "source", st.result.Source, "policy", st.result.Policy)
		}
		if !claimed {
			release()
			return
		}
		// The claim ends before the waiters are released: when they see the
		// answer, the next resolution of d is free to start anywhere.
		unwait := release
		release = func() {
			if err := sh.ReleaseRefresh(context.WithoutCancel(ctx), j.domain, r.holder); err != nil {
				r.log.Warn("published policy: releasing the refresh claim failed (it lapses by itself)", "domain", j.domain, "error", err)
			}
			unwait()
		}
	}
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	st := r.resolve(rctx, j.domain, prev, j.force)
	cancel()
	if ctx.Err() != nil {
		// Closing: the lookups were cut short, so what they found says
		// nothing about the destination. Keep what was known.
		release()
		return
	}
	r.entries.store(j.domain, st)
	if st.failed {
		r.log.Warn("published policy: resolution incomplete", "domain", j.domain, "source", st.result.Source,
			"policy", st.result.Policy, "reason", strings.Join(st.result.Evidence.Notes, "; "))
	} else {
		r.log.Debug("published policy resolved", "domain", j.domain, "source", st.result.Source, "policy", st.result.Policy)
	}
	r.persist(ctx, j.domain, st)
	release()
}

func (r *Resolver) state(d string) (*state, bool) {
	return r.entries.load(d)
}

// known returns the state of d: from memory, or, while Load has not
// finished, from the store (then kept in memory), so that a destination
// the load has not reached yet is answered as it will be afterwards. An
// entry that does not decode is skipped, as Load skips it. An error means
// the store could not say.
func (r *Resolver) known(ctx context.Context, d string) (*state, bool, error) {
	if st, ok := r.entries.load(d); ok || r.loaded.Load() {
		return st, ok, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.budget)
	defer cancel()
	data, ok, err := r.store.PublishedEntry(ctx, d)
	if err != nil || !ok {
		return nil, false, err
	}
	st, err := decodeState(d, data, nil)
	if err != nil {
		return nil, false, nil
	}
	return r.entries.loadOrStore(d, st), true, nil
}

// Loaded reports whether Load has brought every stored entry into memory
// (or there is no store).
func (r *Resolver) Loaded() bool { return r.loaded.Load() }

// schedule queues a resolution of d unless one is queued or running. It
// returns a channel closed when the resolution is done, or false when the
// queue is full or the resolver closed. It never blocks.
func (r *Resolver) schedule(d string, force bool) (<-chan struct{}, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if j, ok := r.inflight[d]; ok {
		return j.done, true
	}
	if r.closed {
		return nil, false
	}
	j := &job{domain: d, force: force, queued: r.clock.Now(), done: make(chan struct{})}
	select {
	case r.queue <- j:
		r.inflight[d] = j
		r.pending.Add(1)
		return j.done, true
	default:
		return nil, false
	}
}

// Lookup returns the published answer for domain d, a lowercase domain
// name as policyd normalises it. A destination resolved before is answered
// from memory at once (and resolved again in the background when its
// cache is due); one seen for the first time waits for its resolution at
// most the budget, or until ctx ends. Until Load has finished, a
// destination not in memory is read from the store first. Lookup never
// fails: without an answer the Result has SourceNone, and Unavailable
// when that read failed.
func (r *Resolver) Lookup(ctx context.Context, d string) Result {
	if why := notDomain(d); why != "" {
		return Result{Domain: d, Source: SourceNone, Evidence: Evidence{Notes: []string{why}}}
	}
	now := r.clock.Now()
	st, ok, err := r.known(ctx, d)
	if err != nil {
		return Result{Domain: d, Source: SourceNone, Unavailable: true,
			Evidence: Evidence{Notes: []string{"the cache is still loading and this entry could not be read: " + err.Error()}}}
	}
	if ok {
		if !now.Before(st.refreshAt) {
			r.schedule(d, false)
		}
		return st.serve(now)
	}
	done, ok := r.schedule(d, false)
	if !ok {
		return Result{Domain: d, Source: SourceNone, Pending: true,
			Evidence: Evidence{Notes: []string{"not resolved yet: the resolution queue is full; the next lookup tries again"}}}
	}
	select {
	case <-done:
	case <-r.clock.After(r.waitFor(d, now)):
	case <-ctx.Done():
	}
	select {
	case <-done: // also when the wait ran out as it finished
		if st, ok := r.state(d); ok {
			return st.serve(r.clock.Now())
		}
	default:
	}
	return Result{Domain: d, Source: SourceNone, Pending: true,
		Evidence: Evidence{Notes: []string{fmt.Sprintf("first contact: not resolved within %s; resolution continues in the background", r.budget)}}}
}

// waitFor is how long a lookup at now for d, whose resolution is queued
// or running, may wait for it: the rest of the budget of the first lookup
// that waited for this resolution.
func (r *Resolver) waitFor(d string, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	j, ok := r.inflight[d]
	if !ok {
		return 0 // finished meanwhile: done is closed
	}
	if j.waitUntil.IsZero() {
		j.waitUntil = now.Add(r.budget)
	}
	return j.waitUntil.Sub(now)
}

// notDomain says why next-hop key d gets no published answer: only a
// recipient domain has MX hosts and an MTA-STS policy; "[host]:port" and
// "domain:port" next-hops skip the MX lookup in Postfix.
func notDomain(d string) string {
	if d == "" || strings.ContainsAny(d, "[]:") || strings.HasPrefix(d, ".") {
		return fmt.Sprintf("%q is not a destination domain (a bracketed host, a port or a .parent key): nothing published applies", d)
	}
	return ""
}

// serve is the answer of a state at time now.
func (st *state) serve(now time.Time) Result {
	res := st.result
	res.CacheAge = now.Sub(res.ResolvedAt)
	if res.Source == SourceMTASTS && (st.policy == nil || !now.Before(st.policy.expires)) {
		// RFC 8461 §5.1: an expired policy is not used; the refresh is
		// already queued.
		res.Source, res.Policy, res.TLSRPT = SourceNone, "", ""
		res.Evidence.Notes = append(append([]string(nil), res.Evidence.Notes...), "the MTA-STS policy has expired; a refresh is pending, the default applies meanwhile")
	}
	return res
}

// Cached returns what the cache holds for d, without resolving.
func (r *Resolver) Cached(d string) (Result, bool) {
	st, ok := r.state(d)
	if !ok {
		return Result{}, false
	}
	return st.serve(r.clock.Now()), true
}

// Wait blocks until every queued resolution is done. For tests and for
// start-up tools; the daemon never calls it on the lookup path.
func (r *Resolver) Wait() { r.pending.Wait() }

// Resolve resolves d now, waiting for the result: for `mailtls lookup
// --resolve` style tools and tests. It shares the cache with Lookup.
func (r *Resolver) Resolve(ctx context.Context, d string) (Result, error) {
	if why := notDomain(d); why != "" {
		return Result{Domain: d, Source: SourceNone, Evidence: Evidence{Notes: []string{why}}}, nil
	}
	done, ok := r.schedule(d, false)
	if !ok {
		return Result{}, errors.New("published: the resolution queue is full or the resolver is closed")
	}
	select {
	case <-done:
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	st, _ := r.state(d)
	return st.serve(r.clock.Now()), nil
}

// RefreshActive queues, for the destinations with deliveries within the
// refresh window, the resolutions that are due: those whose cache expires,
// and a fetch of MTA-STS policies that expire within a day (at most half
// their max_age), so that a policy in use never lapses (RFC 8461 §5.1).
// Other destinations are never resolved without a lookup. It returns how
// many resolutions it queued and how many it skipped because the queue
// was full.
//
// It also forgets the destinations not worth keeping: those resolved
// more than a day after their cache was due (no lookup asked for them
// since) and holding no unexpired MTA-STS policy, so that memory and the
// store hold only destinations in use.
func (r *Resolver) RefreshActive(ctx context.Context) (queued, skipped int, err error) {
	r.dns.expire()
	r.evict(ctx)
	if r.active == nil {
		return 0, 0, nil
	}
	now := r.clock.Now()
	domains, err := r.active(ctx, now.Add(-r.window))
	if err != nil {
		return 0, 0, fmt.Errorf("published: active destinations: %w", err)
	}
	for _, d := range domains {
		if notDomain(d) != "" {
			continue
		}
		st, ok, err := r.known(ctx, d)
		if err != nil {
			continue // the cache is still loading: its worker would not resolve d either
		}
		force := false
		if ok {
			if p := st.policy; p != nil {
				ahead := min(refreshAhead, time.Duration(p.p.MaxAge)*time.Second/2)
				force = !now.Before(p.expires.Add(-ahead))
			}
			if !force && now.Before(st.refreshAt) {
				continue
			}
		}
		if _, ok := r.schedule(d, force); ok {
			queued++
		} else {
			skipped++
		}
	}
	if skipped > 0 {
		r.log.Warn("published policy: refresh queue full", "skipped", skipped, "queued", queued)
	}
	return queued, skipped, nil
}

// evict forgets the entries keep rejects, in memory and in the store.
func (r *Resolver) evict(ctx context.Context) {
	now := r.clock.Now()
	gone := r.entries.stale(func(st *state) bool { return st.keep(now) })
	for _, d := range gone {
		r.entries.delete(d)
		if r.store != nil {
			if err := r.store.DeletePublished(ctx, d); err != nil {
				r.log.Error("published policy: deleting a stale cache entry failed", "domain", d, "error", err)
			}
		}
	}
	if len(gone) > 0 {
		r.log.Debug("published policy: stale entries forgotten", "count", len(gone))
	}
}

// keep reports whether the entry is still worth keeping at now: its cache
// was due less than maxStale ago, or it holds an unexpired policy (which
// RFC 8461 §5.1 asks to keep using).
func (st *state) keep(now time.Time) bool {
	return now.Before(st.keepUntil())
}

func (st *state) keepUntil() time.Time {
	t := st.refreshAt.Add(maxStale)
	if p := st.policy; p != nil {
		t = latest(t, p.expires)
	}
	return t
}

// stored is the persisted form of a state.
type stored struct {
	V         int           `json:"v"`
	Result    Result        `json:"result"`
	RefreshAt time.Time     `json:"refresh_at"`
	Policy    *storedPolicy `json:"policy,omitempty"`
}

type storedPolicy struct {
	ID      string    `json:"id"`
	Text    string    `json:"text"`
	Fetched time.Time `json:"fetched"`
	Expires time.Time `json:"expires"`
}

func (r *Resolver) persist(ctx context.Context, d string, st *state) {
	if r.store == nil {
		return
	}
	s := stored{V: 1, Result: st.result, RefreshAt: st.refreshAt}
	keep := st.keepUntil()
	if p := st.policy; p != nil {
		s.Policy = &storedPolicy{ID: p.id, Text: p.p.String(), Fetched: p.fetched, Expires: p.expires}
	}
	data, err := json.Marshal(s)
	if err == nil {
		// Runs on a background worker after a resolution, never on the
		// lookup path; the answer log row rides in the same transaction.
		if as, ok := r.store.(AnswerStore); ok {
			id := ""
			if s.Policy != nil {
				id = s.Policy.ID
			}
			err = as.SavePublishedAnswer(ctx, d, string(st.result.Source), st.result.Policy, id, data, st.result.ResolvedAt, keep)
		} else {
			err = r.store.SavePublished(ctx, d, string(st.result.Source), st.result.Policy, data, keep)
		}
	}
	if err != nil {
		r.log.Error("published policy: saving the cache failed", "domain", d, "error", err)
	}
}

// Load fills the cache from the store. Entries that no
// longer parse or validate are skipped and reported in the error, which
// is joined; the others are loaded. Entries are decoded on every CPU, in
// batches, while the store is read: decoding is most of the start-up time
// of a daemon with a hundred thousand cached destinations.
//
// Lookups, and the workers (Start), may run meanwhile: a destination not
// in memory yet is read from the store (Store.PublishedEntry), and a
// destination resolved during the load keeps its new state. Once Load
// has read the whole store, memory alone answers.
func (r *Resolver) Load(ctx context.Context) (int, error) {
	if r.store == nil {
		return 0, nil
	}
	type raw struct {
		d    string
		data []byte
	}
	const batchSize = 256
	var (
		n    atomic.Int64
		mu   sync.Mutex
		bad  []error
		wg   sync.WaitGroup
		work = make(chan []raw, 2*runtime.GOMAXPROCS(0))
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			in := interner{} // per worker: no lock
			for batch := range work {
				for _, e := range batch {
					st, err := decodeState(e.d, e.data, in)
					if err != nil {
						mu.Lock()
						bad = append(bad, err)
						mu.Unlock()
						continue
					}
					r.entries.loadOrStore(e.d, st) // a resolution during the load is newer
					n.Add(1)
				}
			}
		})
	}
	var batch []raw
	err := r.store.LoadPublished(ctx, func(d string, data []byte) error {
		batch = append(batch, raw{d, bytes.Clone(data)}) // data is the store's until we return
		if len(batch) == batchSize {
			work <- batch
			batch = nil
		}
		return nil
	})
	if len(batch) > 0 {
		work <- batch
	}
	close(work)
	wg.Wait()
	// Decoding order is not the store's: report bad entries by domain.
	slices.SortFunc(bad, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	if err != nil {
		return int(n.Load()), fmt.Errorf("published: loading the cache: %w", err)
	}
	r.loaded.Store(true)
	return int(n.Load()), errors.Join(bad...)
}

// Decode returns the answer of a stored cache entry (LoadPublished's
// data), with its evidence, as the cache held it when it was saved.
func Decode(domain string, data []byte) (Result, error) {
	st, err := decodeState(domain, data, nil)
	if err != nil {
		return Result{}, err
	}
	return st.result, nil
}

// decodeState decodes a stored entry; in, if not nil, shares the strings
// that repeat across entries.
func decodeState(d string, data []byte, in interner) (*state, error) {
	var s stored
	if err := json.Unmarshal(data, &s); err != nil || s.V != 1 {
		return nil, fmt.Errorf("published: stored entry of %s is unreadable (version %d): %v", d, s.V, err)
	}
	st := &state{result: s.Result, refreshAt: s.RefreshAt}
	st.result.Domain = d
	st.result.Source = Source(in.intern(string(st.result.Source)))
	for i, n := range st.result.Evidence.Notes {
		st.result.Evidence.Notes[i] = in.intern(n)
	}
	if s.Policy != nil {
		p, err := mtasts.ParsePolicy(s.Policy.Text)
		if err != nil {
			return nil, fmt.Errorf("published: stored MTA-STS policy of %s: %w", d, err)
		}
		st.policy = &stsPolicy{id: s.Policy.ID, p: p, fetched: s.Policy.Fetched, expires: s.Policy.Expires}
	}
	switch st.result.Source {
	case SourceNone:
		st.result.Policy = ""
	case SourceDANE, SourceMTASTS:
		pp, err := policyd.ParsePolicy(st.result.Policy)
		if err != nil {
			return nil, fmt.Errorf("published: stored answer of %s: %w", d, err)
		}
		st.result.Policy = in.intern(pp.String())
	default:
		return nil, fmt.Errorf("published: stored entry of %s has unknown source %q", d, st.result.Source)
	}
	st.result.TLSRPT, _ = st.tlsrpt(d) // never trusted from the store: derived again
	return st, nil
}
