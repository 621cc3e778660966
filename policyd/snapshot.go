package policyd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
)

// Override is one operator-set policy for a key.
type Override struct {
	Key, Value string
	Expires    time.Time // zero: never
}

// Result is the outcome of a lookup.
type Result struct {
	Value   string   // the policy to answer with; empty when !Found
	Found   bool     // false: answer NOTFOUND
	Rule    string   // "exact", "wildcard", "published", "default" or "notfound"
	Source  string   // with RulePublished: "dane" or "mta-sts"
	TLSRPT  string   // with RulePublished: its TLSRPT attributes, or ""
	Key     string   // the override key that matched; empty for default/notfound
	Expired []string // keys of expired overrides that would have matched, nearest first
}

// Lookup rules reported in Result.Rule.
const (
	RuleExact    = "exact"
	RuleWildcard = "wildcard"
	RuleDefault  = "default"
	RuleNotFound = "notfound"
)

type entry struct {
	key, value string
	expires    int64 // Unix nanoseconds; 0: never
}

// Snapshot is an immutable set of overrides plus a default, safe for
// concurrent lookups. A nil *Snapshot finds nothing.
type Snapshot struct {
	m       map[string]entry
	def     string
	invalid []string
}

// NewSnapshot builds a snapshot. Keys are normalised with NormalizeKey and
// values with ParsePolicy; when two overrides normalise to the same key the
// later one wins. An override whose key is invalid is left out; one whose
// value is invalid is kept verbatim, so that Postfix defers that
// destination rather than silently using a weaker policy. Both are listed
// by Invalid. def is the answer when nothing matches ("" means NOTFOUND).
func NewSnapshot(ovs []Override, def string) *Snapshot {
	b := NewBuilder(def, len(ovs))
	for _, o := range ovs {
		b.Add(o)
	}
	return b.Snapshot()
}

// Builder builds a Snapshot one override at a time, with NewSnapshot's
// rules, so that a large table need not be held twice while loading.
type Builder struct {
	s    *Snapshot
	norm map[string]string // raw value -> normal form; values repeat a lot
}

// NewBuilder starts a snapshot answering def when nothing matches; size is
// the expected number of overrides (a hint).
func NewBuilder(def string, size int) *Builder {
	b := &Builder{s: &Snapshot{m: make(map[string]entry, size)}, norm: make(map[string]string)}
	if def != "" {
		v, err := b.normValue(def)
		if err != nil {
			b.s.invalid = append(b.s.invalid, fmt.Sprintf("default: %v", err))
		}
		b.s.def = v
	}
	return b
}

func (b *Builder) normValue(v string) (string, error) {
	if n, ok := b.norm[v]; ok {
		return n, nil
	}
	p, err := ParsePolicy(v)
	if err != nil {
		return v, err
	}
	n := p.String()
	if n == v {
		n = v // share the caller's string
	}
	b.norm[v] = n
	return n, nil
}

// Add adds one override; a later one for the same normal key wins.
func (b *Builder) Add(o Override) {
	k, err := NormalizeKey(o.Key)
	if err != nil {
		b.s.invalid = append(b.s.invalid, err.Error())
		return
	}
	v, err := b.normValue(o.Value)
	if err != nil {
		b.s.invalid = append(b.s.invalid, fmt.Sprintf("key %s: %v", k, err))
	}
	var exp int64
	if !o.Expires.IsZero() {
		exp = o.Expires.UnixNano()
	}
	b.s.m[k] = entry{key: k, value: v, expires: exp}
}

// Snapshot returns the snapshot built so far. The Builder must not be
// used afterwards.
func (b *Builder) Snapshot() *Snapshot {
	s := b.s
	b.s, b.norm = nil, nil
	return s
}

// Len returns the number of overrides in s.
func (s *Snapshot) Len() int {
	if s == nil {
		return 0
	}
	return len(s.m)
}

// Default returns the answer used when no override matches.
func (s *Snapshot) Default() string {
	if s == nil {
		return ""
	}
	return s.def
}

// Invalid describes the overrides NewSnapshot left out or kept unvalidated.
func (s *Snapshot) Invalid() []string {
	if s == nil {
		return nil
	}
	return s.invalid
}

// maxFastKey is the longest key Lookup lowercases on the stack: a 253-byte
// name plus brackets and a port.
const maxFastKey = 272

// Lookup finds the policy for a next-hop key, as Postfix passes it, less
// one trailing dot on its host name: first the key itself, then for a domain name each parent wildcard
// (".b.c", ".c", nearest first), then the default. Bracketed and
// host:port keys match exactly only, as in smtp_tls_policy.c.
// Overrides whose expiry is at or before now are skipped and listed in
// Result.Expired. Lookup allocates nothing for ASCII keys unless it finds
// expired overrides.
func (s *Snapshot) Lookup(key string, now time.Time) Result {
	var buf [maxFastKey]byte
	if len(key) > maxFastKey {
		return s.lookupSlow(key, now.UnixNano())
	}
	b := buf[:len(key)]
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c >= 0x80 {
			return s.lookupSlow(key, now.UnixNano())
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return s.lookupBytes(b, now.UnixNano())
}

// lookupSlow handles long and non-ASCII keys: IDN U-labels become A-labels.
func (s *Snapshot) lookupSlow(key string, now int64) Result {
	k, err := NormalizeKey(key)
	if err != nil {
		k = strings.ToLower(key)
	}
	return s.lookupBytes([]byte(k), now)
}

// lookupBytes looks up a lowercase key, after dropping one trailing dot
// from its host name (trimKeyDot, in place). It does not retain k, so
// callers may pass a buffer they reuse. now is in Unix nanoseconds.
func (s *Snapshot) lookupBytes(k []byte, now int64) Result {
	k = trimKeyDot(k)
	var r Result
	if s == nil {
		r.Rule = RuleNotFound
		return r
	}
	if e, ok := s.m[string(k)]; ok {
		if e.expires == 0 || e.expires > now {
			return Result{Value: e.value, Found: true, Rule: RuleExact, Key: e.key}
		}
		r.Expired = append(r.Expired, e.key)
	}
	if isDomainKey(k) {
		for i := 1; i < len(k); i++ {
			if k[i] != '.' {
				continue
			}
			if e, ok := s.m[string(k[i:])]; ok {
				if e.expires == 0 || e.expires > now {
					return Result{Value: e.value, Found: true, Rule: RuleWildcard, Key: e.key, Expired: r.Expired}
				}
				r.Expired = append(r.Expired, e.key)
			}
		}
	}
	if s.def != "" {
		r.Value, r.Found, r.Rule = s.def, true, RuleDefault
		return r
	}
	r.Rule = RuleNotFound
	return r
}

// isDomainKey reports whether parent wildcards apply to k: not a bracketed
// next-hop, not host:port, not a UNIX-domain path.
func isDomainKey(k []byte) bool {
	if len(k) == 0 || k[0] == '[' {
		return false
	}
	for _, c := range k {
		if c == ':' || c == '/' {
			return false
		}
	}
	return true
}

// Source supplies overrides, typically from the store.
type Source interface {
	// Version is cheap and changes whenever the overrides may have changed.
	Version(ctx context.Context) (uint64, error)
	// Overrides calls add for every override. A snapshot is stored only
	// if it returns nil.
	Overrides(ctx context.Context, add func(Override)) error
}

// load builds a snapshot from src.
func (t *Table) load(ctx context.Context, src Source) (*Snapshot, error) {
	b := NewBuilder(*t.def.Load(), 0)
	if err := src.Overrides(ctx, b.Add); err != nil {
		return nil, err
	}
	return b.Snapshot(), nil
}

// Table holds the current snapshot. Lookups load it atomically; Watch or
// Store swap in a new one.
type Table struct {
	def atomic.Pointer[string]
	cur atomic.Pointer[Snapshot]
	pub atomic.Pointer[publisherBox] // consulted after an override miss

	// reloaded is the source version of the snapshot Reload stored last,
	// so that a Watch started afterwards does not load the same again;
	// Store clears it.
	reloaded atomic.Pointer[uint64]

	// newTicker is the clock seam for Watch; tests replace it. polled, if
	// set, runs after each of Watch's polls, so that a test can step
	// Watch one whole poll at a time.
	newTicker func(d time.Duration) (<-chan time.Time, func())
	polled    func()
}

// NewTable returns a table whose snapshots answer def when nothing matches.
// Load returns nil until the first Store or successful load by Watch; the
// servers answer TEMP until then, so that Postfix defers mail instead of
// sending it under the default while the overrides are unknown.
func NewTable(def string) *Table {
	t := &Table{}
	t.def.Store(&def)
	return t
}

// SetDefault changes the answer for keys without an override, from the
// next snapshot on (Reload builds one at once).
func (t *Table) SetDefault(def string) { t.def.Store(&def) }

// Load returns the current snapshot, or nil if none has been stored.
func (t *Table) Load() *Snapshot { return t.cur.Load() }

// Store replaces the current snapshot.
func (t *Table) Store(s *Snapshot) {
	t.cur.Store(s)
	t.reloaded.Store(nil)
}

// Reload builds a snapshot from src and stores it. It returns the version
// it loaded.
func (t *Table) Reload(ctx context.Context, src Source) (uint64, error) {
	v, err := src.Version(ctx)
	if err != nil {
		return 0, fmt.Errorf("policyd: reading overrides version: %w", err)
	}
	// Version before Overrides: a change in between bumps the version again
	// and the next poll reloads.
	snap, err := t.load(ctx, src)
	if err != nil {
		return 0, fmt.Errorf("policyd: reading overrides: %w", err)
	}
	t.Store(snap)
	t.reloaded.Store(&v)
	return v, nil
}

// Watch loads src at once (unless Reload has just loaded its current
// version) and then polls src.Version every interval,
// reloading when it changes. On an error it logs, keeps serving the last
// good snapshot and retries at the next poll; it logs the recovery too. It
// returns nil when ctx is done.
func (t *Table) Watch(ctx context.Context, src Source, every time.Duration, log *slog.Logger) error {
	if every <= 0 {
		return errors.New("policyd: watch interval must be positive")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	newTicker := t.newTicker
	if newTicker == nil {
		newTicker = func(d time.Duration) (<-chan time.Time, func()) {
			tk := time.NewTicker(d)
			return tk.C, tk.Stop
		}
	}
	tick, stop := newTicker(every)
	defer stop()

	var (
		loaded   bool
		version  uint64
		failures int
		lastErr  string
	)
	if v := t.reloaded.Load(); v != nil && t.Load() != nil {
		loaded, version = true, *v
	}
	recovered := func() {
		if failures > 0 {
			log.Info("policy source recovered", "failures", failures)
			failures, lastErr = 0, ""
		}
	}
	poll := func() {
		v, err := src.Version(ctx)
		if err == nil && loaded && v == version {
			recovered()
			return
		}
		var s *Snapshot
		if err != nil {
			err = fmt.Errorf("policyd: reading overrides version: %w", err)
		} else if s, err = t.load(ctx, src); err != nil {
			err = fmt.Errorf("policyd: reading overrides: %w", err)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			lvl := slog.LevelDebug // repeated failures: once is enough at Error
			if msg := err.Error(); msg != lastErr {
				lvl, lastErr = slog.LevelError, msg
			}
			log.Log(ctx, lvl, "policy reload failed; serving the last good snapshot",
				"err", err, "failures", failures, "loaded", loaded)
			return
		}
		t.Store(s)
		recovered()
		lvl := slog.LevelInfo
		if !loaded {
			lvl = slog.LevelDebug // the caller logs the start-up line
		}
		log.Log(ctx, lvl, "policy snapshot loaded", "version", v, "overrides", s.Len())
		if inv := s.Invalid(); len(inv) > 0 {
			log.Warn("policy snapshot has invalid overrides", "count", len(inv), "first", inv[0])
		}
		loaded, version = true, v
	}
	step := func() {
		poll()
		if t.polled != nil {
			t.polled()
		}
	}
	step()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			step()
		}
	}
}
