package ingest

import (
	"context"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/store"
)

// The storage seam of the pipeline (ARCHITECTURE.md, "Add a store
// engine"): each interface is the part of the store one use needs.
// *store.Store implements them all, and so must any backend that passes
// store/storetest (seams_test.go checks both).

// BatchCommitter is what the follower writes through: each batch of
// deliveries is stored with the reader's checkpoint in one transaction,
// exactly once, and the checkpoint is read back on start.
type BatchCommitter interface {
	CommitBatchEach(ctx context.Context, source string, ds []delivery.Delivery, checkpoint []byte, added func(*delivery.Delivery)) (int, error)
	Checkpoint(ctx context.Context, source string) ([]byte, error)
}

// Pruner deletes raw deliveries before a day, keeping the rollups (prune,
// --keep), and tells where the raw rows now start.
type Pruner interface {
	Prune(ctx context.Context, before time.Time) (store.PruneResult, error)
	Horizon(ctx context.Context) (time.Time, error)
}

// SourceLocker keeps a second follower of the same fleet host and log
// out: LockSource fails with store.ErrSourceLocked while another holds
// the lock, which goes away with the process that holds it.
type SourceLocker interface {
	LockSource(ctx context.Context, host, source string) (release func(), err error)
}

// HostSetter names the fleet host that the store writes deliveries and
// checkpoints as (--host).
type HostSetter interface {
	SetHost(ctx context.Context, name string) error
}

// FollowStore is what a follower needs: commits as its host, the
// follower's lock, and pruning for --keep.
type FollowStore interface {
	BatchCommitter
	HostSetter
	SourceLocker
	Pruner
}

// Bulk is the writer of an import (*store.Bulk): PrepareBatch checks and
// converts deliveries for it (on the parser's goroutine), Add inserts the rows of
// a batch not already stored, committing when a transaction is due;
// Committed and Old count the rows committed and those left out as older
// than the pruning horizon.
type Bulk interface {
	PrepareBatch(ds []delivery.Delivery) (*store.Batch, error)
	Add(ctx context.Context, b *store.Batch) (int, error)
	Commit(ctx context.Context) error
	Close() error
	Committed() int
	Old() int
}

// Source is a followed mail log: a file (*logparse.Follower) or journald
// (*logparse.JournalFollower). Run reads from the checkpoint on and hands
// each batch to commit until ctx is done or commit fails. A Source that
// can reopen its log (a file, on SIGHUP) also has a Reopen method.
type Source interface {
	Run(ctx context.Context, from logparse.Checkpoint, commit logparse.Commit) error
}
