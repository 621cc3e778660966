package daemon

import (
	"context"
	"time"

	"github.com/mailtls/mailtls/policyd"
)

// OverrideSource is what the daemon reads the overrides from (part of the
// storage seam, ARCHITECTURE.md "Add a store engine"; StoreSource adapts
// it to policyd.Source and policyd.KeySource): OverridesVersion changes on
// every override change, and the daemon's Table polls it; OverridesFor
// answers lookups until the first load of OverridePolicies is done.
type OverrideSource interface {
	OverridesVersion(ctx context.Context) (uint64, error)
	OverridePolicies(ctx context.Context, fn func(key, policy string, expires time.Time)) error
	OverridesFor(ctx context.Context, keys []string, fn func(key, policy string, expires time.Time)) error
}

// StoreSource adapts the store to policyd.Source and, for the lookups of
// the warm-up, policyd.KeySource.
type StoreSource struct{ Store OverrideSource }

func (s StoreSource) Version(ctx context.Context) (uint64, error) {
	return s.Store.OverridesVersion(ctx)
}

func (s StoreSource) Overrides(ctx context.Context, add func(policyd.Override)) error {
	return s.Store.OverridePolicies(ctx, func(key, policy string, expires time.Time) {
		add(policyd.Override{Key: key, Policy: policy, Expires: expires})
	})
}

// OverridesFor makes StoreSource a policyd.KeySource, for the lookups of
// the warm-up.
func (s StoreSource) OverridesFor(ctx context.Context, keys []string, add func(policyd.Override)) error {
	return s.Store.OverridesFor(ctx, keys, func(key, policy string, expires time.Time) {
		add(policyd.Override{Key: key, Policy: policy, Expires: expires})
	})
}

// noOverrides is the override source of a daemon whose sources leave out
// override.
type noOverrides struct{}

func (noOverrides) Version(context.Context) (uint64, error) { return 0, nil }

func (noOverrides) Overrides(context.Context, func(policyd.Override)) error { return nil }

func (noOverrides) OverridesFor(context.Context, []string, func(policyd.Override)) error { return nil }

// changeNotifier is a store that announces override changes (PostgreSQL's
// LISTEN/NOTIFY), so that the daemon's watcher reloads at once rather than
// at its next poll. It is not part of the seam: polling OverrideSource is
// enough for a backend to be correct.
type changeNotifier interface {
	OverrideChanges(ctx context.Context) <-chan struct{}
}

// changes returns st's change announcements, or nil (never) when st makes
// none or the overrides are not a source.
func changes(ctx context.Context, st any, overrides bool) <-chan struct{} {
	if n, ok := st.(changeNotifier); ok && overrides {
		return n.OverrideChanges(ctx)
	}
	return nil
}
