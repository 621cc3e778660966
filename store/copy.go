package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// Copying one database into another (`mailtls migrate`): a host's SQLite
// file into the fleet's PostgreSQL. Everything goes through the target's
// own write paths, so the copy is idempotent and a copy killed half-way
// is finished by running it again:
//
//   - deliveries through the insert path (AddDeliveries), keyed by their
//     log line and host as always: a delivery already in the target is
//     skipped and not counted again in the rollups, which the insert path
//     builds as it would for a follower;
//   - overrides and their history in one transaction: a key the target
//     lacks gets the source's override with its times, a history entry
//     the target already holds (same key, change, actor, time and note)
//     is not added again, and a key the target holds with another policy
//     is a conflict (CopyOptions.Prefer);
//   - checkpoints, which the target keeps when it has one for the same
//     host and source (that host already follows into it);
//   - rollups of the days before the source's pruning horizon, whose raw
//     rows are gone: copied as they are, unless the target has the row.

// Prefer values of CopyOptions.
const (
	PreferSource = "source"
	PreferTarget = "target"
)

// CopyOptions say how Copy maps and merges.
type CopyOptions struct {
	// Host names the source's host 0 in the target (the host that wrote
	// before hosts had names, or the first to write); "" keeps its name
	// in the source, and an unclaimed host 0 then becomes DefaultHost.
	// The source's other hosts keep their names.
	Host string
	// Prefer resolves overrides whose key the target holds with another
	// policy, note or expiry: "" refuses to copy anything then,
	// PreferSource replaces the target's (recording the change in its
	// history), PreferTarget keeps it.
	Prefer string
	// Progress, when set, is called as the copy goes: the stage
	// ("overrides", "deliveries", "checkpoints", "rollups"), how much of
	// it is done and its total.
	Progress func(stage string, done, total int64)
}

// CopyResult counts what Copy added to the target.
type CopyResult struct {
	Overrides   int   // overrides created or replaced
	Conflicts   int   // keys held with another policy by both
	History     int   // history entries added
	Deliveries  int64 // deliveries added
	Skipped     int64 // deliveries the target already held (or older than its horizon)
	Checkpoints int   // checkpoints added
	Rollups     int64 // rollup rows of pruned days added
}

// ErrConflict is returned by Copy when the target holds overrides that
// differ from the source's and CopyOptions.Prefer is empty.
var ErrConflict = errors.New("store: conflicting overrides")

// copyBatch is how many deliveries go into the target per transaction.
const copyBatch = 5000

// Copy copies the overrides, history, deliveries, checkpoints and pruned
// days' rollups of src into dst (see above). It returns what it added.
func Copy(ctx context.Context, src, dst *Store, opt CopyOptions) (CopyResult, error) {
	var res CopyResult
	switch opt.Prefer {
	case "", PreferSource, PreferTarget:
	default:
		return res, fmt.Errorf("%w: prefer %q; accepted: source, target", ErrBadInput, opt.Prefer)
	}
	progress := opt.Progress
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	names, err := copyHostNames(ctx, src, opt.Host)
	if err != nil {
		return res, err
	}
	n, err := copyOverrides(ctx, src, dst, opt.Prefer, &res)
	if err != nil {
		return res, err
	}
	progress("overrides added", int64(res.Overrides), int64(n))
	if err := copyDeliveries(ctx, src, dst, names, progress, &res); err != nil {
		return res, err
	}
	if n, err = copyCheckpoints(ctx, src, dst, names, &res); err != nil {
		return res, err
	}
	progress("checkpoints added", int64(res.Checkpoints), int64(n))
	rows, err := copyPrunedRollups(ctx, src, dst, names, &res)
	if err != nil {
		return res, err
	}
	progress("rollup rows of pruned days added", res.Rollups, rows)
	return res, nil
}

// copyHostNames maps the source's host ids to their names in the target.
func copyHostNames(ctx context.Context, src *Store, host0 string) (map[int64]string, error) {
	names := map[int64]string{}
	err := src.read(ctx, func(tx *sql.Tx) error {
		return queryRows(ctx, tx, "hosts", `SELECT id, name FROM hosts`, nil, func(rows *sql.Rows) error {
			var id int64
			var name string
			if err := rows.Scan(&id, &name); err != nil {
				return err
			}
			names[id] = name
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if host0 != "" {
		if names[0], err = CheckHost(host0); err != nil {
			return nil, err
		}
	} else if names[0] == "" {
		if names[0], err = DefaultHost(); err != nil {
			return nil, err
		}
	}
	for id, n := range names {
		if id != 0 && n == names[0] {
			return nil, fmt.Errorf("%w: host %q is already the name of another host in %s; choose another --host", ErrBadInput, n, src.path)
		}
	}
	return names, nil
}

type historyRow struct {
	key, actor, note string
	old, new         sql.NullString
	at               int64
}

// copyOverrides copies the overrides and the history in one transaction
// of the target.
func copyOverrides(ctx context.Context, src, dst *Store, prefer string, res *CopyResult) (int, error) {
	ovs, err := src.Overrides(ctx)
	if err != nil {
		return 0, err
	}
	var hist []historyRow
	err = src.read(ctx, func(tx *sql.Tx) error {
		return queryRows(ctx, tx, "history", `SELECT key, old, new, actor, at, note FROM override_history ORDER BY id`, nil,
			func(rows *sql.Rows) error {
				var h historyRow
				if err := rows.Scan(&h.key, &h.old, &h.new, &h.actor, &h.at, &h.note); err != nil {
					return err
				}
				// An older mailtls stored actors and notes as given (see text.go).
				h.actor, h.note = safeText(h.actor), safeText(h.note)
				hist = append(hist, h)
				return nil
			})
	})
	if err != nil {
		return 0, err
	}
	for i := range ovs {
		ovs[i].Note = safeText(ovs[i].Note)
	}
	return len(ovs), dst.withTx(ctx, func(tx *sql.Tx) error {
		if err := dst.serialize(ctx, tx, pgOverridesLock); err != nil {
			return err
		}
		held := map[string]storedOverride{}
		for i := 0; i < len(ovs); i += 500 {
			m, err := storedOverrides(ctx, tx, ovs[i:min(i+500, len(ovs))])
			if err != nil {
				return err
			}
			for k, v := range m {
				held[k] = v
			}
		}
		var conflicts []string
		var replace []Override
		var create []Override
		for _, o := range ovs {
			t, ok := held[o.Key]
			switch {
			case !ok:
				create = append(create, o)
			case t.policy == o.Policy && t.note == o.Note && t.expires == nullUnix(o.Expires):
			default:
				conflicts = append(conflicts, fmt.Sprintf("%s (source %q, target %q)", o.Key, o.Policy, t.policy))
				replace = append(replace, o)
			}
		}
		res.Conflicts = len(conflicts)
		if len(conflicts) > 0 && prefer == "" {
			sort.Strings(conflicts)
			more := ""
			if len(conflicts) > 3 {
				more = fmt.Sprintf(" and %d more", len(conflicts)-3)
				conflicts = conflicts[:3]
			}
			return fmt.Errorf("%w: %d keys have another policy in the target: %s%s; nothing copied: choose with --prefer source or --prefer target",
				ErrConflict, res.Conflicts, strings.Join(conflicts, ", "), more)
		}
		changed := false
		for _, o := range create {
			if _, err := tx.ExecContext(ctx, `INSERT INTO overrides(key, policy, note, created, updated, expires) VALUES (?, ?, ?, ?, ?, ?)`,
				o.Key, o.Policy, o.Note, o.Created.Unix(), o.Updated.Unix(), nullUnix(o.Expires)); err != nil {
				return fmt.Errorf("store: copy override %s: %w", o.Key, err)
			}
			res.Overrides++
			changed = true
		}
		for _, h := range hist {
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM override_history WHERE key = ? AND old IS NOT DISTINCT FROM ? AND new IS NOT DISTINCT FROM ?
				AND actor = ? AND at = ? AND note = ?`, h.key, h.old, h.new, h.actor, h.at, h.note).Scan(&one)
			if err == nil {
				continue
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("store: copy history of %s: %w", h.key, err)
			}
			if err := addHistory(ctx, tx, h.key, h.old, h.new, h.actor, time.Unix(h.at, 0).UTC(), h.note); err != nil {
				return err
			}
			res.History++
			changed = true
		}
		if prefer == PreferSource {
			// The store's own path: the replacement is a change of the
			// target's override, recorded in its history now.
			for _, o := range replace {
				if _, err := setOverrideTx(ctx, tx, o, normActor("migrate"), dst.now()); err != nil {
					return err
				}
				res.Overrides++
				changed = true
			}
		}
		if !changed {
			return nil
		}
		return bumpGeneration(ctx, tx)
	})
}

// copyDeliveries streams the source's deliveries into the target, host by
// host, through the insert path.
func copyDeliveries(ctx context.Context, src, dst *Store, names map[int64]string, progress func(string, int64, int64), res *CopyResult) error {
	var total int64
	err := src.read(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT count(*) FROM deliveries`).Scan(&total)
	})
	if err != nil {
		return fmt.Errorf("store: count deliveries: %w", err)
	}
	ids := make([]int64, 0, len(names))
	for id := range names {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var done int64
	progress("deliveries", 0, total)
	for _, id := range ids {
		if err := dst.SetHost(ctx, names[id]); err != nil {
			return err
		}
		batch := make([]delivery.Delivery, 0, copyBatch)
		flush := func() error {
			n, err := dst.AddDeliveries(ctx, batch)
			if err != nil {
				return err
			}
			res.Deliveries += int64(n)
			res.Skipped += int64(len(batch) - n)
			done += int64(len(batch))
			batch = batch[:0]
			progress("deliveries", done, total)
			return nil
		}
		q := `SELECT ` + deliveryCols + ` FROM deliveries WHERE host_id = ? ORDER BY time, id`
		err := src.read(ctx, func(tx *sql.Tx) error {
			return streamDeliveries(ctx, tx, q, []any{id}, func(d delivery.Delivery) error {
				batch = append(batch, d)
				if len(batch) == copyBatch {
					return flush()
				}
				return nil
			})
		})
		if err == nil && len(batch) > 0 {
			err = flush()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// copyCheckpoints copies the followers' checkpoints the target lacks.
func copyCheckpoints(ctx context.Context, src, dst *Store, names map[int64]string, res *CopyResult) (int, error) {
	type ckpt struct {
		host    int64
		source  string
		data    []byte
		updated int64
	}
	var cps []ckpt
	err := src.read(ctx, func(tx *sql.Tx) error {
		return queryRows(ctx, tx, "checkpoints", `SELECT host_id, source, data, updated FROM checkpoints ORDER BY host_id, source`, nil,
			func(rows *sql.Rows) error {
				var c ckpt
				if err := rows.Scan(&c.host, &c.source, &c.data, &c.updated); err != nil {
					return err
				}
				cps = append(cps, c)
				return nil
			})
	})
	if err != nil {
		return 0, err
	}
	for _, c := range cps {
		if err := dst.SetHost(ctx, names[c.host]); err != nil {
			return 0, err
		}
		err := dst.withTx(ctx, func(tx *sql.Tx) error {
			id, err := dst.hostID(ctx, tx)
			if err != nil {
				return err
			}
			r, err := tx.ExecContext(ctx, `INSERT INTO checkpoints(host_id, source, data, updated) VALUES (?, ?, ?, ?)
				ON CONFLICT(host_id, source) DO NOTHING`, id, c.source, c.data, c.updated)
			if err != nil {
				return fmt.Errorf("store: copy checkpoint %s: %w", c.source, err)
			}
			if n, err := r.RowsAffected(); err == nil {
				res.Checkpoints += int(n)
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return len(cps), nil
}

// copyPrunedRollups copies the rollup rows of the days (hours) before the
// source's pruning horizon, whose raw rows are gone and so were not
// rebuilt by copyDeliveries, and raises the target's horizon to the
// source's: before it, the target's raw rows are not complete either.
func copyPrunedRollups(ctx context.Context, src, dst *Store, names map[int64]string, res *CopyResult) (int64, error) {
	var h int64
	if err := src.read(ctx, func(tx *sql.Tx) error {
		var err error
		h, err = horizon(ctx, tx)
		return err
	}); err != nil {
		return 0, err
	}
	if h == horizonNone {
		return 0, nil
	}
	tables := []struct{ name, cols, bound string }{
		{"rollup_day", "rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, n, first_time, last_time", "day"},
		{"rollup_day_internal", "rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, n, first_time, last_time", "day"},
		{"rollup_hour", "hour, status, tls, trust, protocol, cipher, fallback, tls_failure, n", "hour"},
		{"rollup_hour_internal", "hour, status, tls, trust, protocol, cipher, fallback, tls_failure, n", "hour"},
	}
	ids := make([]int64, 0, len(names))
	for id := range names {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var total int64
	for _, id := range ids {
		if err := dst.SetHost(ctx, names[id]); err != nil {
			return 0, err
		}
		for _, t := range tables {
			limit := floorDiv(h, usPerDay)
			if t.bound == "hour" {
				limit = floorDiv(h, usPerHour)
			}
			ncols := strings.Count(t.cols, ",") + 1
			var rows [][]any
			err := src.read(ctx, func(tx *sql.Tx) error {
				return queryRows(ctx, tx, t.name, `SELECT `+t.cols+` FROM `+t.name+` WHERE host_id = ? AND `+t.bound+` < ?`, []any{id, limit},
					func(r *sql.Rows) error {
						vals := make([]any, ncols)
						ptrs := make([]any, ncols)
						for i := range vals {
							ptrs[i] = &vals[i]
						}
						if err := r.Scan(ptrs...); err != nil {
							return err
						}
						for i, v := range vals {
							if s, ok := v.(string); ok {
								vals[i] = safeText(s) // a relay of an older mailtls (see text.go)
							}
						}
						rows = append(rows, vals)
						return nil
					})
			})
			if err != nil {
				return 0, err
			}
			total += int64(len(rows))
			err = dst.withTx(ctx, func(tx *sql.Tx) error {
				hid, err := dst.hostID(ctx, tx)
				if err != nil {
					return err
				}
				q := `INSERT INTO ` + t.name + `(` + t.cols + `, host_id) VALUES (?` + strings.Repeat(`, ?`, ncols) + `) ON CONFLICT DO NOTHING`
				for _, v := range rows {
					r, err := tx.ExecContext(ctx, q, append(v, hid)...)
					if err != nil {
						return fmt.Errorf("store: copy %s: %w", t.name, err)
					}
					if n, err := r.RowsAffected(); err == nil {
						res.Rollups += n
					}
				}
				return nil
			})
			if err != nil {
				return 0, err
			}
		}
	}
	return total, dst.withTx(ctx, func(tx *sql.Tx) error {
		if err := dst.serialize(ctx, tx, pgHorizonLock); err != nil { // as Prune's change of it
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta(name, value) VALUES (?, ?)
			ON CONFLICT(name) DO UPDATE SET value = max(meta.value, excluded.value)`, horizonName, h); err != nil {
			return fmt.Errorf("store: copy the pruning horizon: %w", err)
		}
		return nil
	})
}
