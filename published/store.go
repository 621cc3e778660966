package published

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Store keeps the cache across restarts. Entries are opaque to it: data is
// this package's encoding of one destination; source and policy are the
// answer, kept in the clear for reports; expires is when the entry is no
// longer worth keeping. store.Store implements it in SQLite.
type Store interface {
	SavePublished(ctx context.Context, domain, source, policy string, data []byte, expires time.Time) error
	// LoadPublished calls fn for every entry; data is valid only during
	// the call.
	LoadPublished(ctx context.Context, fn func(domain string, data []byte) error) error
	// PublishedEntry returns the data of one entry, and false when there
	// is none: lookups read it while Resolver.Load runs.
	PublishedEntry(ctx context.Context, domain string) ([]byte, bool, error)
	DeletePublished(ctx context.Context, domain string) error
}

// SharedStore is a Store that several daemons share: the hosts of a fleet
// on one PostgreSQL database (store.Store implements it on both engines).
// Before resolving a destination a daemon claims its refresh there; one
// that finds another's claim waits for that daemon's answer and adopts it
// (Resolver.claim), so that the fleet resolves each destination once.
type SharedStore interface {
	// ClaimRefresh claims the refresh of domain for holder until the
	// given time; false when another holder's claim has not lapsed at now.
	ClaimRefresh(ctx context.Context, domain, holder string, now, until time.Time) (bool, error)
	// ReleaseRefresh ends holder's claim on domain.
	ReleaseRefresh(ctx context.Context, domain, holder string) error
}

// AnswerStore is a Store that also logs each destination's answer over
// time (store.Store: the answer log that `report --by policy` joins
// deliveries to). When the Store is one, the resolver saves through it:
// at is when the answer was resolved, policyID the MTA-STS policy id ("" without
// one; set for a testing policy too).
type AnswerStore interface {
	SavePublishedAnswer(ctx context.Context, domain, source, policy, policyID string, data []byte, at, expires time.Time) error
}

// MemStore is a Store in memory, for tests and for running without a
// database.
type MemStore struct {
	mu sync.Mutex
	m  map[string]memEntry
}

type memEntry struct {
	source, policy string
	data           []byte
	expires        time.Time
}

// SavePublished stores or replaces the entry of domain.
func (s *MemStore) SavePublished(_ context.Context, domain, source, policy string, data []byte, expires time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]memEntry{}
	}
	s.m[domain] = memEntry{source, policy, append([]byte(nil), data...), expires}
	return nil
}

// LoadPublished calls fn for every entry, in domain order.
func (s *MemStore) LoadPublished(_ context.Context, fn func(domain string, data []byte) error) error {
	s.mu.Lock()
	var domains []string
	for d := range s.m {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	entries := make([]memEntry, len(domains))
	for i, d := range domains {
		entries[i] = s.m[d]
	}
	s.mu.Unlock()
	for i, d := range domains {
		if err := fn(d, entries[i].data); err != nil {
			return err
		}
	}
	return nil
}

// PublishedEntry returns the data of domain's entry.
func (s *MemStore) PublishedEntry(_ context.Context, domain string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[domain]
	return e.data, ok, nil
}

// DeletePublished removes the entry of domain.
func (s *MemStore) DeletePublished(_ context.Context, domain string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, domain)
	return nil
}

// Answer returns the source and policy stored for domain, for tests.
func (s *MemStore) Answer(domain string) (source, policy string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[domain]
	return e.source, e.policy, ok
}
