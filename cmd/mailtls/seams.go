package main

import (
	"context"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/store"
)

// The storage seam of the commands (ARCHITECTURE.md, "Add a store
// engine"): each interface is the part of the store one use case needs.
// *store.Store implements them all, and so must any backend that passes
// store/storetest (seams_test.go checks both).

// batchCommitter is what the follower writes through: each batch of
// deliveries is stored with the reader's checkpoint in one transaction,
// exactly once, and the checkpoint is read back on start.
type batchCommitter interface {
	CommitBatchEach(ctx context.Context, source string, ds []delivery.Delivery, checkpoint []byte, added func(*delivery.Delivery)) (int, error)
	Checkpoint(ctx context.Context, source string) ([]byte, error)
}

// pruner deletes raw deliveries before a day, keeping the rollups (prune,
// --keep), and tells where the raw rows now start.
type pruner interface {
	Prune(ctx context.Context, before time.Time) (store.PruneResult, error)
	Horizon(ctx context.Context) (time.Time, error)
}

// sourceLocker keeps a second follower of the same fleet host and log
// out: LockSource fails with store.ErrSourceLocked while another holds
// the lock, which goes away with the process that holds it.
type sourceLocker interface {
	LockSource(ctx context.Context, host, source string) (release func(), err error)
}

// hostSetter names the fleet host that the store writes deliveries and
// checkpoints as (--host).
type hostSetter interface {
	SetHost(ctx context.Context, name string) error
}

// followStore is what `mailtls follow` needs: commits as its host, the
// follower's lock, and pruning for --keep.
type followStore interface {
	batchCommitter
	hostSetter
	sourceLocker
	pruner
}

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
