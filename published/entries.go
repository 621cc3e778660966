package published

import "sync"

// entries is the in-memory cache, domain -> *state: a plain map under a
// read-write lock. The lookup path only reads it; a write (one finished
// resolution, Load, evict) holds the lock for a map assignment. For a
// hundred thousand destinations it is about a third of a sync.Map's
// size, which keeps a node per entry.
type entries struct {
	mu sync.RWMutex
	m  map[string]*state
}

func (e *entries) load(d string) (*state, bool) {
	e.mu.RLock()
	st, ok := e.m[d]
	e.mu.RUnlock()
	return st, ok
}

func (e *entries) store(d string, st *state) {
	e.mu.Lock()
	if e.m == nil {
		e.m = map[string]*state{}
	}
	e.m[d] = st
	e.mu.Unlock()
}

// loadOrStore stores st unless d has a state already, and returns the
// state d has afterwards.
func (e *entries) loadOrStore(d string, st *state) *state {
	e.mu.Lock()
	defer e.mu.Unlock()
	if old, ok := e.m[d]; ok {
		return old
	}
	if e.m == nil {
		e.m = map[string]*state{}
	}
	e.m[d] = st
	return st
}

func (e *entries) delete(d string) {
	e.mu.Lock()
	delete(e.m, d)
	e.mu.Unlock()
}

// stale returns the domains whose state keep rejects.
func (e *entries) stale(keep func(*state) bool) []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var gone []string
	for d, st := range e.m {
		if !keep(st) {
			gone = append(gone, d)
		}
	}
	return gone
}

// interner gives equal strings one copy: the notes of cached entries
// repeat across destinations.
type interner map[string]string

func (in interner) intern(s string) string {
	if in == nil {
		return s
	}
	if v, ok := in[s]; ok {
		return v
	}
	in[s] = s
	return s
}
