package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"
)

// Retention. Prune deletes the raw delivery rows of whole UTC days before
// a horizon and keeps the daily and hourly rollups, so reports over those
// days stay exact while the database stops growing. The horizon (meta
// deliveries_horizon, unix microseconds of a UTC midnight) only moves
// forward. Deliveries older than it are not stored again (see
// insertBatch): their keys are gone, so a re-read log could not be told
// apart from new mail and would be counted twice in the rollups.
//
// Before the horizon, reports answer whole UTC days only (FitWindow), and
// listings of raw rows (deliveries, downgrades) start at the horizon.

const horizonName = "deliveries_horizon"

// horizonNone is the horizon of a database never pruned.
const horizonNone = math.MinInt64

// pruneChunk rows are deleted per transaction, so the follower and policy
// changes never wait long for the write lock.
var pruneChunk = 5000

// pruneLocked is called once Prune holds its lock; tests hold a Prune
// there.
var pruneLocked = func() {}

// PruneResult is what Prune did.
type PruneResult struct {
	Horizon time.Time // raw deliveries before it are gone
	Deleted int64     // rows deleted by this call
}

// Prune deletes the deliveries before the UTC midnight at or before
// before, and records that midnight as the horizon. The rollups are kept.
// It deletes in small transactions; if interrupted, calling it again
// finishes the job. Pruning to an earlier horizon than the recorded one
// keeps the recorded one. On PostgreSQL, while another Prune runs on the
// same database, it fails at once with an error wrapping ErrPruneRunning.
func (s *Store) Prune(ctx context.Context, before time.Time) (PruneResult, error) {
	h, err := s.pruneHorizon(before)
	if err != nil {
		return PruneResult{}, err
	}
	release, err := s.lockPrune(ctx)
	if err != nil {
		return PruneResult{}, err
	}
	defer release()
	pruneLocked()
	err = s.withTx(ctx, func(tx *sql.Tx) error {
		if err := s.serialize(ctx, tx, pgHorizonLock); err != nil {
			return err
		}
		old, err := horizon(ctx, tx)
		if err != nil {
			return err
		}
		if h <= old {
			h = old
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta(name, value) VALUES (?, ?)
			ON CONFLICT(name) DO UPDATE SET value = excluded.value`, horizonName, h); err != nil {
			return fmt.Errorf("store: prune: record horizon: %w", err)
		}
		return nil
	})
	if err != nil {
		return PruneResult{}, err
	}
	res := PruneResult{Horizon: fromMicros(h)}
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		var n int64
		err := s.withTx(ctx, func(tx *sql.Tx) error {
			r, err := tx.ExecContext(ctx, `DELETE FROM deliveries WHERE id IN (
				SELECT id FROM deliveries INDEXED BY deliveries_time WHERE time < ? LIMIT ?)`, h, pruneChunk)
			if err != nil {
				return fmt.Errorf("store: prune: %w", err)
			}
			n, err = r.RowsAffected()
			return err
		})
		if err != nil {
			return res, err
		}
		res.Deleted += n
		if n < int64(pruneChunk) {
			return res, s.withTx(ctx, func(tx *sql.Tx) error {
				_, err := pruneAnswerLog(ctx, tx, h)
				return err
			})
		}
	}
}

// pruneHorizon is the UTC midnight at or before before.
func (s *Store) pruneHorizon(before time.Time) (int64, error) {
	if before.IsZero() {
		return 0, fmt.Errorf("%w: prune needs a time", ErrBadInput)
	}
	if before.After(s.now()) {
		return 0, fmt.Errorf("%w: prune before %s: that is in the future", ErrBadInput, before.UTC().Format(time.RFC3339))
	}
	return floorDiv(micros(before), usPerDay) * usPerDay, nil
}

// PruneDryRun returns what Prune(before) would do, changing nothing.
func (s *Store) PruneDryRun(ctx context.Context, before time.Time) (PruneResult, error) {
	h, err := s.pruneHorizon(before)
	if err != nil {
		return PruneResult{}, err
	}
	var res PruneResult
	err = s.read(ctx, func(tx *sql.Tx) error {
		old, err := horizon(ctx, tx)
		if err != nil {
			return err
		}
		h = max(h, old)
		res.Horizon = fromMicros(h)
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM deliveries INDEXED BY deliveries_time WHERE time < ?`, h).Scan(&res.Deleted); err != nil {
			return fmt.Errorf("store: prune: %w", err)
		}
		return nil
	})
	return res, err
}

// Horizon returns the time before which raw deliveries were pruned, or the
// zero time if they never were.
func (s *Store) Horizon(ctx context.Context) (time.Time, error) {
	var h int64
	err := s.read(ctx, func(tx *sql.Tx) error {
		var err error
		h, err = horizon(ctx, tx)
		return err
	})
	if err != nil || h == horizonNone {
		return time.Time{}, err
	}
	return fromMicros(h), nil
}

// horizon reads the horizon in tx; horizonNone when there is none.
func horizon(ctx context.Context, tx *sql.Tx) (int64, error) {
	var h int64
	err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = ?`, horizonName).Scan(&h)
	if errors.Is(err, sql.ErrNoRows) {
		return horizonNone, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: read pruning horizon: %w", err)
	}
	return h, nil
}

// FitWindow returns the largest part of [since, until) that reports can
// answer exactly when raw deliveries before horizon (a UTC midnight; zero
// for none) have been pruned: before the horizon only whole UTC days are
// kept, so a bound before it that is not a UTC midnight moves inward to
// the nearest one. Zero bounds are unbounded. The result is empty
// (!since.Before(until)) when the window lies within one such day.
func FitWindow(since, until, horizon time.Time) (time.Time, time.Time) {
	if horizon.IsZero() {
		return since, until
	}
	h := micros(horizon)
	if !since.IsZero() {
		if us := micros(since); us < h && us%usPerDay != 0 {
			since = fromMicros(ceilDiv(us, usPerDay) * usPerDay)
		}
	}
	if !until.IsZero() {
		if us := micros(until); us < h && us%usPerDay != 0 {
			until = fromMicros(floorDiv(us, usPerDay) * usPerDay)
		}
	}
	return since, until
}

// fittedPlan is planFor for reports from the rollups, with [since, until)
// fitted to the horizon read in tx. A window that lies within one day
// before the horizon cannot be answered and is an error.
func fittedPlan(ctx context.Context, tx *sql.Tx, since, until time.Time, m matcher, internal bool) (plan, error) {
	h, err := horizon(ctx, tx)
	if err != nil {
		return plan{}, err
	}
	fs, fu := since, until
	if h != horizonNone {
		fs, fu = FitWindow(since, until, fromMicros(h))
		if since.Before(until) && !fs.Before(fu) {
			day := since.UTC().Truncate(24 * time.Hour)
			return plan{}, fmt.Errorf("%w: the window %s to %s lies within one UTC day before %s, when deliveries were pruned, and only whole days are kept before then; ask for the whole day (%s to %s)",
				ErrBadInput, since.UTC().Format(time.RFC3339), until.UTC().Format(time.RFC3339), fromMicros(h).Format(time.DateOnly),
				day.Format(time.RFC3339), day.Add(24*time.Hour).Format(time.RFC3339))
		}
	}
	p := planFor(fs, fu, m)
	p.horizon, p.internal = h, internal
	return p, nil
}
