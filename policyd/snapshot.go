package policyd

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Override is one operator-set policy for a key: what the daemon looks
// up (Key, Policy, Expires), and what the store keeps with it (the note,
// when it was created and last changed), which the daemon ignores. It is
// the one override type: store.Override is this type, and the store
// refuses one whose key is not in normal form (NormalizeKey) or whose
// policy ParsePolicy does not accept.
type Override struct {
	Key     string    // "example.com", ".example.com", "[host]:port"
	Policy  string    // normalised policy text, e.g. "encrypt protocols=>=TLSv1.2"
	Note    string    // the operator's note
	Created time.Time // set by the store
	Updated time.Time // set by the store
	Expires time.Time // zero: never
}

// Expired reports whether o has expired at now: an override is in force
// until, not at, its expiry.
func (o Override) Expired(now time.Time) bool {
	return !o.Expires.IsZero() && !o.Expires.After(now)
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

// Snapshot is an immutable set of overrides plus a default, safe for
// concurrent lookups. A nil *Snapshot finds nothing.
//
// It is compact, for tables of millions of overrides: the keys are one
// string, each override three numbers (where its key ends, its value
// among the few distinct ones, its expiry), and the index an
// open-addressing hash table of entry numbers. Nothing in it but the key
// string and the distinct values holds a pointer, so that the garbage
// collector has next to nothing to scan, and a lookup hashes the key once
// per candidate (itself, then each parent wildcard) as a map would.
type Snapshot struct {
	keys  string   // every key, concatenated
	end   []uint32 // key i is keys[end[i-1]:end[i]] (end[-1] = 0)
	val   []uint32 // value of entry i: an index into vals
	exp   []int64  // expiry of entry i, Unix nanoseconds, 0: never; nil when none expires
	vals  []string // distinct values
	slots []uint32 // hash table: entry number + 1; 0 is empty; len is a power of two
	seed  maphash.Seed

	def     string
	invalid []string
}

func (s *Snapshot) key(i uint32) string {
	var start uint32
	if i > 0 {
		start = s.end[i-1]
	}
	return s.keys[start:s.end[i]]
}

// find returns the entry of key k, or false.
func (s *Snapshot) find(k []byte) (uint32, bool) {
	if len(s.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(s.slots) - 1)
	for h := maphash.Bytes(s.seed, k) & mask; ; h = (h + 1) & mask {
		e := s.slots[h]
		if e == 0 {
			return 0, false
		}
		if s.key(e-1) == string(k) {
			return e - 1, true
		}
	}
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
// rules, so that a large table need not be held twice while loading. It
// keeps no reference to the strings it is given.
type Builder struct {
	s      *Snapshot
	keys   []byte
	expiry bool              // some override expires
	norm   map[string]uint32 // raw value -> index of its normal form in s.vals; values repeat a lot
	vidx   map[string]uint32 // normal form -> index in s.vals

	// byKey: when two overrides normalise to the same key, the one whose
	// key as given sorts last wins, whatever the order of Add (Table's
	// loads; see Source). raw holds the given key of the entries where it
	// differs from the normal one.
	byKey bool
	raw   map[uint32]string
}

// NewBuilder starts a snapshot answering def when nothing matches; size is
// the expected number of overrides (a hint).
func NewBuilder(def string, size int) *Builder {
	s := &Snapshot{seed: maphash.MakeSeed()}
	size = max(size, 0)
	s.end = make([]uint32, 0, size)
	s.val = make([]uint32, 0, size)
	s.exp = make([]int64, 0, size)
	s.slots = make([]uint32, slotsFor(size))
	b := &Builder{s: s, keys: make([]byte, 0, 16*size), norm: map[string]uint32{}, vidx: map[string]uint32{}}
	if def != "" {
		p, err := ParsePolicy(def)
		if err != nil {
			s.invalid = append(s.invalid, fmt.Sprintf("default: %v", err))
			s.def = def
		} else {
			s.def = p.String()
		}
	}
	return b
}

// slotsFor is the hash table size for n entries: a power of two, at least
// twice n, so that probe sequences stay short.
func slotsFor(n int) int {
	sz := 8
	for sz < 2*n {
		sz <<= 1
	}
	return sz
}

// value returns the index in s.vals of the normal form of raw value v.
func (b *Builder) value(v string) (uint32, error) {
	if i, ok := b.norm[v]; ok {
		return i, nil
	}
	n, err := v, error(nil)
	if p, perr := ParsePolicy(v); perr != nil {
		err = perr
	} else {
		n = p.String()
	}
	i, ok := b.vidx[n]
	if !ok {
		n = strings.Clone(n) // the caller's string may be transient
		i = uint32(len(b.s.vals))
		b.s.vals = append(b.s.vals, n)
		b.vidx[n] = i
	}
	if err == nil {
		b.norm[strings.Clone(v)] = i // an invalid value is reported each time
	}
	return i, err
}

// Add adds one override; a later one for the same normal key wins.
func (b *Builder) Add(o Override) {
	k, err := NormalizeKey(o.Key)
	if err != nil {
		b.s.invalid = append(b.s.invalid, err.Error())
		return
	}
	v, err := b.value(o.Policy)
	if err != nil {
		b.s.invalid = append(b.s.invalid, fmt.Sprintf("key %s: %v", k, err))
	}
	var exp int64
	if !o.Expires.IsZero() {
		exp = o.Expires.UnixNano()
		b.expiry = b.expiry || exp != 0
	}
	s := b.s
	if i, ok := b.find(k); ok {
		if b.byKey {
			old, ok := b.raw[i]
			if !ok {
				old = k
			}
			if o.Key < old {
				return
			}
			b.setRaw(i, o.Key, k)
		}
		s.val[i], s.exp[i] = v, exp
		return
	}
	if 2*(len(s.end)+1) > len(s.slots) {
		b.grow()
	}
	b.keys = append(b.keys, k...)
	if uint64(len(b.keys)) > math.MaxUint32 {
		panic("policyd: override keys exceed 4 GiB")
	}
	s.end = append(s.end, uint32(len(b.keys)))
	s.val = append(s.val, v)
	s.exp = append(s.exp, exp)
	b.insert(uint32(len(s.end) - 1))
	if b.byKey {
		b.setRaw(uint32(len(s.end)-1), o.Key, k)
	}
}

func (b *Builder) setRaw(i uint32, raw, k string) {
	if raw == k {
		delete(b.raw, i)
		return
	}
	if b.raw == nil {
		b.raw = map[uint32]string{}
	}
	b.raw[i] = strings.Clone(raw)
}

func (b *Builder) key(i uint32) []byte {
	var start uint32
	if i > 0 {
		start = b.s.end[i-1]
	}
	return b.keys[start:b.s.end[i]]
}

func (b *Builder) find(k string) (uint32, bool) {
	s := b.s
	mask := uint64(len(s.slots) - 1)
	for h := maphash.String(s.seed, k) & mask; ; h = (h + 1) & mask {
		e := s.slots[h]
		if e == 0 {
			return 0, false
		}
		if string(b.key(e-1)) == k {
			return e - 1, true
		}
	}
}

// insert puts entry i, known to be absent, in the hash table.
func (b *Builder) insert(i uint32) {
	s := b.s
	mask := uint64(len(s.slots) - 1)
	h := maphash.Bytes(s.seed, b.key(i)) & mask
	for s.slots[h] != 0 {
		h = (h + 1) & mask
	}
	s.slots[h] = i + 1
}

func (b *Builder) grow() {
	b.s.slots = make([]uint32, 2*len(b.s.slots))
	for i := range uint32(len(b.s.end)) {
		b.insert(i)
	}
}

// Snapshot returns the snapshot built so far. The Builder must not be
// used afterwards.
func (b *Builder) Snapshot() *Snapshot {
	s := b.s
	s.keys = string(b.keys) // one copy, of the exact size
	if len(s.end) == 0 {
		s.slots = nil
	}
	// Give back what growing by doubling left over.
	s.end, s.val = slices.Clip(s.end), slices.Clip(s.val)
	if cap(s.end)-len(s.end) > len(s.end)/8 {
		s.end, s.val = slices.Clone(s.end), slices.Clone(s.val)
	}
	if !b.expiry {
		s.exp = nil
	} else if cap(s.exp)-len(s.exp) > len(s.exp)/8 {
		s.exp = slices.Clone(s.exp)
	}
	b.s, b.keys, b.norm, b.vidx, b.raw = nil, nil, nil, nil, nil
	return s
}

// Len returns the number of overrides in s.
func (s *Snapshot) Len() int {
	if s == nil {
		return 0
	}
	return len(s.end)
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
	if i, ok := s.find(k); ok {
		if s.exp == nil || s.exp[i] == 0 || s.exp[i] > now {
			return Result{Value: s.vals[s.val[i]], Found: true, Rule: RuleExact, Key: s.key(i)}
		}
		r.Expired = append(r.Expired, s.key(i))
	}
	if isDomainKey(k) {
		for i := nextParent(k, 0); i > 0; i = nextParent(k, i) {
			if e, ok := s.find(k[i:]); ok {
				if s.exp == nil || s.exp[e] == 0 || s.exp[e] > now {
					return Result{Value: s.vals[s.val[e]], Found: true, Rule: RuleWildcard, Key: s.key(e), Expired: r.Expired}
				}
				r.Expired = append(r.Expired, s.key(e))
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

// nextParent returns where the parent wildcard after the one at i starts
// in domain key k (k[j:] is ".b.c", then ".c"; i = 0 asks for the first),
// or -1 when there is none.
func nextParent(k []byte, i int) int {
	for j := i + 1; j < len(k); j++ {
		if k[j] == '.' {
			return j
		}
	}
	return -1
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
	// Overrides calls add for every override, in any order: when two keys
	// normalise to the same one, the override whose key as given sorts
	// last (bytewise) wins, as if they came in key order. A snapshot is
	// stored only if it returns nil.
	Overrides(ctx context.Context, add func(Override)) error
}

// load builds a snapshot from src.
func (t *Table) load(ctx context.Context, src Source) (*Snapshot, error) {
	b := NewBuilder(*t.def.Load(), t.Load().Len()) // a reload is about as big
	b.byKey = true
	if err := src.Overrides(ctx, b.Add); err != nil {
		return nil, err
	}
	return b.Snapshot(), nil
}

// Table holds the current snapshot. Lookups load it atomically; Watch or
// Store swap in a new one.
type Table struct {
	def  atomic.Pointer[string]
	cur  atomic.Pointer[Snapshot]
	pub  atomic.Pointer[publisherBox] // consulted after an override miss
	warm atomic.Pointer[warmupBox]    // answers until the first snapshot (SetWarmup)

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
// sending it under the default while the overrides are unknown, unless
// SetWarmup gives them a way to answer exactly meanwhile.
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
	return t.WatchWake(ctx, src, every, nil, log)
}

// WatchWake is Watch that also polls at once whenever wake receives: a
// source that announces its changes (PostgreSQL's LISTEN/NOTIFY) is then
// reloaded within a round trip, and the polling stays as the fallback. A
// nil wake never receives.
func (t *Table) WatchWake(ctx context.Context, src Source, every time.Duration, wake <-chan struct{}, log *slog.Logger) error {
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
		case <-wake:
			step()
		}
	}
}
