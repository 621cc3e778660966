package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
// A Bulk is not safe for concurrent use.
type Bulk struct {
	s     *Store
	tx    *sql.Tx
	ru    *rollups
	rows  int // rows offered in the open transaction
	began time.Time

	pending, committed int // rows inserted: in the open transaction, and committed
	old                int // rows left out as older than the pruning horizon
}

const (
	bulkMaxRows = 200_000
	bulkMaxAge  = time.Second
)

// Bulk returns a bulk writer on s. Call Commit when done, or Rollback to
// drop what was added since the last commit.
func (s *Store) Bulk() *Bulk { return &Bulk{s: s} }

// Add inserts the rows of b that are not already stored and returns how
// many it inserted. It commits when the transaction is due.
func (bk *Bulk) Add(ctx context.Context, b *Batch) (int, error) {
	if bk.tx == nil {
		w, err := bk.s.writer()
		if err != nil {
			return 0, err
		}
		tx, err := w.BeginTx(ctx, nil)
		if err != nil {
			return 0, fmt.Errorf("store: begin: %w", err)
		}
		bk.tx, bk.ru, bk.rows, bk.began = tx, newRollups(), 0, time.Now()
	}
	n, old, ru, err := insertBatch(ctx, bk.tx, b)
	if err != nil {
		return 0, errors.Join(err, bk.Rollback())
	}
	bk.old += old
	bk.ru.merge(ru)
	bk.rows += b.Len()
	bk.pending += n
	if bk.rows >= bulkMaxRows || time.Since(bk.began) >= bulkMaxAge {
		if err := bk.Commit(ctx); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// Commit writes the rollups of the open transaction and commits it. It does
// nothing when no transaction is open.
func (bk *Bulk) Commit(ctx context.Context) error {
	if bk.tx == nil {
		return nil
	}
	if err := bk.ru.write(ctx, bk.tx); err != nil {
		return errors.Join(err, bk.Rollback())
	}
	err := bk.tx.Commit()
	bk.tx, bk.ru = nil, nil
	if err != nil {
		bk.pending = 0
		return fmt.Errorf("store: commit: %w", err)
	}
	bk.committed += bk.pending
	bk.pending = 0
	return nil
}

// Committed returns how many rows Add inserted that have been committed.
func (bk *Bulk) Committed() int { return bk.committed }

// Old returns how many rows Add left out because they are older than the
// pruning horizon (see Store.Prune).
func (bk *Bulk) Old() int { return bk.old }

// Rollback drops the open transaction, if any.
func (bk *Bulk) Rollback() error {
	if bk.tx == nil {
		return nil
	}
	err := rollback(bk.tx)
	bk.tx, bk.ru, bk.pending = nil, nil, 0
	return err
}
