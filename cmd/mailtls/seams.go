package main

import (
	"context"
	"time"

	"github.com/mailtls/mailtls/ingest"
	"github.com/mailtls/mailtls/store"
)

// The storage seam of the commands (ARCHITECTURE.md, "Add a store
// engine"): each interface is the part of the store one use case needs.
// *store.Store implements them all, and so must any backend that passes
// store/storetest (seams_test.go checks both). The import and follow
// pipeline's part is in package ingest (ingest/seams.go).

// pruner and hostSetter are ingest's, for the commands that prune or
// write deliveries.
type (
	pruner     = ingest.Pruner
	hostSetter = ingest.HostSetter
)

// overrideWriter changes the overrides (policy set/rm/import, check
// --apply), each change recorded in the history with who made it and when.
type overrideWriter interface {
	SetOverride(ctx context.Context, o store.Override, actor string) error
	RemoveOverride(ctx context.Context, key, actor string) error
	ImportOverrides(ctx context.Context, ovs []store.Override, actor string) (int, error)
	Overrides(ctx context.Context) ([]store.Override, error)
	History(ctx context.Context, key string) ([]store.Change, error)
}

// overrideSource is what the daemon reads the overrides from
// (storeSource adapts it to policyd.Source and policyd.KeySource):
// OverridesVersion changes on every override change, and the daemon's
// Table polls it; OverridesFor answers lookups until the first load of
// OverridePolicies is done.
type overrideSource interface {
	OverridesVersion(ctx context.Context) (uint64, error)
	OverridePolicies(ctx context.Context, fn func(key, policy string, expires time.Time)) error
	OverridesFor(ctx context.Context, keys []string, fn func(key, policy string, expires time.Time)) error
}

// changeNotifier is a store that announces override changes (PostgreSQL's
// LISTEN/NOTIFY), so that the daemon's watcher reloads at once rather than
// at its next poll. It is not part of the seam: polling overrideSource is
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
