package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Status is what the database holds, for `mailtls status`. Every figure
// comes from an index or the rollups, so it is cheap on a large database.
type Status struct {
	Path      string
	Bytes     int64 // database file plus its WAL
	Overrides int64
	Expired   int64     // of Overrides, expired (still stored)
	LastEdit  time.Time // last override change (zero: none)
	LastActor string
	// Counted is every delivery ever stored, as the reports count them;
	// Stored those whose rows are still kept (not pruned).
	Counted, Stored int64
	First, Last     time.Time // oldest and newest stored delivery (zero: none)
	PrunedBefore    time.Time // zero: never pruned
	Checkpoints     []CheckpointInfo
	// Hosts are the fleet hosts known to the database (see hosts.go), by
	// name; host 0 appears as UnclaimedHost only while it holds data.
	Hosts []HostInfo
}

// CheckpointInfo is one follower's stored position: Host's, for Source.
type CheckpointInfo struct {
	Host    string
	Source  string
	Data    []byte
	Updated time.Time
}

// HostInfo is what the database holds of one fleet host.
type HostInfo struct {
	Name       string
	Counted    int64     // deliveries, as the reports count them
	LastCommit time.Time // its followers' last commit (zero: none)
}

// Status reports what the database holds; now decides which overrides have
// expired.
func (s *Store) Status(ctx context.Context, now time.Time) (Status, error) {
	st := Status{Path: s.path}
	if s.eng == engSQLite {
		for _, p := range []string{s.path, s.path + "-wal"} {
			if fi, err := os.Stat(p); err == nil {
				st.Bytes += fi.Size()
			}
		}
	}
	err := s.read(ctx, func(tx *sql.Tx) error {
		var (
			first, last, edit sql.NullInt64
			actor             sql.NullString
		)
		h, err := horizon(ctx, tx)
		if err != nil {
			return err
		}
		if s.eng == engPostgres {
			if err := tx.QueryRowContext(ctx, `SELECT pg_database_size(current_database())`).Scan(&st.Bytes); err != nil {
				return fmt.Errorf("store: status: database size: %w", err)
			}
		}
		if err := tx.QueryRowContext(ctx, `SELECT count(*), count(CASE WHEN expires IS NOT NULL AND expires <= ? THEN 1 END) FROM overrides`,
			now.Unix()).Scan(&st.Overrides, &st.Expired); err != nil {
			return fmt.Errorf("store: status: overrides: %w", err)
		}
		err = tx.QueryRowContext(ctx, `SELECT at, actor FROM override_history ORDER BY id DESC LIMIT 1`).Scan(&edit, &actor)
		if err != nil && err != sql.ErrNoRows {
			return fmt.Errorf("store: status: override history: %w", err)
		}
		// Rows are kept for every delivery from the horizon (a UTC
		// midnight, so a whole hour) on, and the hourly rollup counts
		// every delivery ever stored.
		// every delivery ever stored (internal hops in rollup_hour_internal).
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(sum(n), 0), coalesce(sum(CASE WHEN hour >= ? THEN n END), 0) FROM (
			SELECT hour, n FROM rollup_hour UNION ALL SELECT hour, n FROM rollup_hour_internal)`,
			floorDiv(h, usPerHour)).Scan(&st.Counted, &st.Stored); err != nil {
			return fmt.Errorf("store: status: deliveries: %w", err)
		}
		if err := tx.QueryRowContext(ctx, `SELECT (SELECT min(time) FROM deliveries), (SELECT max(time) FROM deliveries)`).Scan(&first, &last); err != nil {
			return fmt.Errorf("store: status: deliveries: %w", err)
		}
		if first.Valid {
			st.First, st.Last = fromMicros(first.Int64), fromMicros(last.Int64)
		}
		if edit.Valid {
			st.LastEdit, st.LastActor = time.Unix(edit.Int64, 0).UTC(), actor.String
		}
		if h != horizonNone {
			st.PrunedBefore = fromMicros(h)
		}
		names, err := hostNames(ctx, tx)
		if err != nil {
			return err
		}
		err = queryRows(ctx, tx, "status: checkpoints", `SELECT host_id, source, data, updated FROM checkpoints ORDER BY host_id, source`, nil,
			func(rows *sql.Rows) error {
				var c CheckpointInfo
				var at, id int64
				if err := rows.Scan(&id, &c.Source, &c.Data, &at); err != nil {
					return err
				}
				c.Host, c.Updated = names[id], time.Unix(at, 0).UTC()
				st.Checkpoints = append(st.Checkpoints, c)
				return nil
			})
		if err != nil {
			return err
		}
		st.Hosts, err = hostInfos(ctx, tx, names, st.Checkpoints)
		return err
	})
	return st, err
}

// hostInfos lists the hosts of names with what they stored, by name.
// Unclaimed host 0 is left out when it holds nothing.
func hostInfos(ctx context.Context, tx *sql.Tx, names map[int64]string, cps []CheckpointInfo) ([]HostInfo, error) {
	counted := map[int64]int64{}
	err := queryRows(ctx, tx, "status: hosts", `SELECT host_id, sum(n) FROM (
		SELECT host_id, n FROM rollup_hour UNION ALL SELECT host_id, n FROM rollup_hour_internal) AS r GROUP BY host_id`, nil,
		func(rows *sql.Rows) error {
			var id, n int64
			if err := rows.Scan(&id, &n); err != nil {
				return err
			}
			counted[id] = n
			return nil
		})
	if err != nil {
		return nil, err
	}
	byName := map[string]*HostInfo{}
	var out []HostInfo
	for id, name := range names {
		if name == UnclaimedHost && counted[id] == 0 && !slices.ContainsFunc(cps, func(c CheckpointInfo) bool { return c.Host == name }) {
			continue
		}
		out = append(out, HostInfo{Name: name, Counted: counted[id]})
	}
	slices.SortFunc(out, func(a, b HostInfo) int { return strings.Compare(a.Name, b.Name) })
	for i := range out {
		byName[out[i].Name] = &out[i]
	}
	for _, c := range cps {
		if h := byName[c.Host]; h != nil && c.Updated.After(h.LastCommit) {
			h.LastCommit = c.Updated
		}
	}
	return out, nil
}
