package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Bulk stores batches in few large transactions, for bulk imports: it
// commits once it holds bulkMaxRows rows or its transaction has been open
// for bulkMaxAge, and on Commit, instead of after every batch. Per-batch
// commits would write the rollups and the hot index pages once per batch;
// here they are written once per transaction.
//
// Rows of a batch become visible, and durable, at the commit that follows
// it; Add reports the rows it inserted before that. While a transaction is
// open, other writers (the follower, policy changes) wait for it, at most
// bulkMaxAge plus one batch; readers, such as the policy daemon, do not.
//
// The writing goroutine does only the inserts. Helpers take work off it,
// onto another core: one counts the inserted rows into the rollups while
// the next batch is inserted, one copies the WAL back into the database (a
// checkpoint) after each commit, which the writer's connection would
// otherwise do itself inside a commit, and one has the kernel write the
// files out as they grow (see writeback).
//
// A Bulk is not safe for concurrent use, but for PrepareBatch, which may
// run on another goroutine than the rest (an import prepares the next
// batch while the writer adds this one). Call Close when done.
type Bulk struct {
	s     *Store
	t     *wtx
	count chan counted  // rows for the counting goroutine
	ru    *rollups      // its result, when count is closed and done is
	done  chan struct{} // closed when the counting goroutine has finished
	rows  int           // rows offered in the open transaction
	began time.Time
	host  int64 // the host the open transaction writes as (see hosts.go)
	// knownHost is host+1 once a transaction has begun, for PrepareBatch,
	// which may run on another goroutine; 0 before.
	knownHost atomic.Int64

	pending, committed int // rows inserted: in the open transaction, and committed
	old                int // rows left out as older than the pruning horizon

	ckpt     chan struct{} // wakes the checkpointing goroutine; nil until the first commit
	ckptDone chan error
	wb       *writeback // nil until the first Add
}

// counted is a batch's rows after insertion, with those skipped marked.
type counted struct {
	rows    []row
	skipped []bool
	release func() // the batch's (Batch.SetRelease), or nil
}

const (
	bulkMaxRows = 200_000
	bulkMaxAge  = time.Second
	// On PostgreSQL an open transaction holds up no other host's writer
	// (the rollup rows it updates are its host's), so it may stay open
	// longer: fewer commits update fewer rollup rows twice.
	pgBulkMaxAge = 5 * time.Second
)

// Bulk returns a bulk writer on s. Call Commit when done, or Rollback to
// drop what was added since the last commit, then Close.
func (s *Store) Bulk() *Bulk { return &Bulk{s: s} }

// Add inserts the rows of b that are not already stored and returns how
// many it inserted. It commits when the transaction is due.
func (bk *Bulk) Add(ctx context.Context, b *Batch) (int, error) {
	if bk.t == nil {
		t, err := bk.s.begin(ctx, true)
		if err != nil {
			return 0, err
		}
		host, err := bk.s.hostID(ctx, t.Tx)
		if err != nil {
			return 0, errors.Join(err, t.rollback())
		}
		bk.t, bk.rows, bk.began, bk.host = t, 0, time.Now(), host
		bk.knownHost.Store(host + 1)
		if bk.wb == nil && bk.s.eng == engSQLite {
			bk.wb = newWriteback(bk.s.path)
		}
		bk.ru, bk.count, bk.done = newRollups(), make(chan counted, 16), make(chan struct{})
		go func(ru *rollups, in <-chan counted, done chan<- struct{}) {
			for c := range in {
				ru.countInserted(c.rows, c.skipped)
				if c.release != nil {
					c.release()
				}
			}
			close(done)
		}(bk.ru, bk.count, bk.done)
	}
	rows, skipped, n, old, err := insertBatch(ctx, bk.t, b, bk.host)
	if err != nil {
		return 0, errors.Join(err, bk.Rollback())
	}
	bk.count <- counted{rows, skipped, b.release}
	if bk.wb != nil {
		bk.wb.poke()
	}
	bk.old += old
	bk.rows += b.Len()
	bk.pending += n
	maxAge := bulkMaxAge
	if bk.s.eng == engPostgres {
		maxAge = pgBulkMaxAge
	}
	if bk.rows >= bulkMaxRows || time.Since(bk.began) >= maxAge {
		if err := bk.Commit(ctx); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// counts stops the counting goroutine and returns the rollups of the open
// transaction.
func (bk *Bulk) counts() *rollups {
	if bk.count == nil {
		return nil
	}
	close(bk.count)
	<-bk.done
	ru := bk.ru
	bk.count, bk.done, bk.ru = nil, nil, nil
	return ru
}

// Commit writes the rollups of the open transaction and commits it. It does
// nothing when no transaction is open.
func (bk *Bulk) Commit(ctx context.Context) error {
	if bk.t == nil {
		return nil
	}
	if err := bk.counts().write(ctx, bk.t, bk.host); err != nil {
		return errors.Join(err, bk.Rollback())
	}
	err := bk.t.commit()
	bk.t = nil
	if err != nil {
		bk.pending = 0
		return err
	}
	bk.committed += bk.pending
	bk.pending = 0
	bk.checkpoint()
	return nil
}

// checkpoint has the WAL copied back into the database in the background,
// on a connection of the read pool (a checkpoint is not a write
// transaction and readers may run one). Wake-ups while one runs are
// merged.
func (bk *Bulk) checkpoint() {
	if bk.s.eng != engSQLite {
		return // a WAL checkpoint is SQLite's
	}
	if bk.ckpt == nil {
		r, err := bk.s.reader()
		if err != nil {
			return // closed; its writer checkpoints on close
		}
		bk.ckpt, bk.ckptDone = make(chan struct{}, 1), make(chan error, 1)
		go func(wake <-chan struct{}, done chan<- error) {
			var errs []error
			for range wake {
				var busy, logged, copied int
				if err := r.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logged, &copied); err != nil {
					errs = append(errs, err)
				}
			}
			done <- errors.Join(errs...)
		}(bk.ckpt, bk.ckptDone)
	}
	select {
	case bk.ckpt <- struct{}{}:
	default: // one is already due
	}
}

// Committed returns how many rows Add inserted that have been committed.
func (bk *Bulk) Committed() int { return bk.committed }

// Old returns how many rows Add left out because they are older than the
// pruning horizon (see Store.Prune).
func (bk *Bulk) Old() int { return bk.old }

// Rollback drops the open transaction, if any.
func (bk *Bulk) Rollback() error {
	if bk.t == nil {
		return nil
	}
	bk.counts()
	err := bk.t.rollback()
	bk.t, bk.pending = nil, 0
	return err
}

// Close rolls back a transaction still open and waits for the background
// checkpoints to finish. A failed checkpoint loses nothing (the WAL keeps
// the rows, and the next checkpoint copies them); Close reports it all the
// same.
func (bk *Bulk) Close() error {
	err := bk.Rollback()
	if bk.wb != nil {
		bk.wb.stop()
		bk.wb = nil
	}
	if bk.ckpt != nil {
		close(bk.ckpt)
		if cerr := <-bk.ckptDone; cerr != nil {
			err = errors.Join(err, fmt.Errorf("store: checkpoint: %w", cerr))
		}
		bk.ckpt = nil
	}
	return err
}
