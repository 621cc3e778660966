package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// publishedSchema is the migration that adds the cache of what
// destinations publish (package published: DANE and MTA-STS answers). The
// store keeps each entry as opaque data with its answer in the clear, so
// that reports can join on it without knowing the encoding.
const publishedSchema = `
CREATE TABLE published (
	domain  TEXT PRIMARY KEY,
	source  TEXT NOT NULL,     -- dane | mta-sts | none
	policy  TEXT NOT NULL,     -- the Postfix answer; '' with none
	data    BLOB NOT NULL,     -- package published's encoding of the entry
	saved   INTEGER NOT NULL,  -- unix seconds
	expires INTEGER NOT NULL   -- unix seconds: not worth keeping after
) WITHOUT ROWID;
CREATE INDEX published_expires ON published(expires);
`

// SavePublished stores or replaces the published-policy cache entry of
// domain.
func (s *Store) SavePublished(ctx context.Context, domain, source, policy string, data []byte, expires time.Time) error {
	if err := checkText("published domain", domain, false); err != nil {
		return err
	}
	if err := checkText("published source of "+domain, source, false); err != nil {
		return err
	}
	policy = safeText(policy) // fetched text (see text.go)
	return s.withTx(ctx, func(tx *sql.Tx) error {
		return savePublishedTx(ctx, tx, domain, source, policy, data, s.now(), expires)
	})
}

func savePublishedTx(ctx context.Context, tx *sql.Tx, domain, source, policy string, data []byte, now, expires time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO published(domain, source, policy, data, saved, expires) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT(domain) DO UPDATE SET source = excluded.source, policy = excluded.policy, data = excluded.data,
	saved = excluded.saved, expires = excluded.expires`,
		domain, source, policy, data, now.Unix(), expires.Unix())
	if err != nil {
		return fmt.Errorf("store: save published %s: %w", domain, err)
	}
	return nil
}

// LoadPublished calls fn for every published-policy cache entry, in domain
// order. data is valid only during the call. Like OverridePolicies, it
// reads without mmap (bulkRead).
func (s *Store) LoadPublished(ctx context.Context, fn func(domain string, data []byte) error) error {
	return s.bulkRead(ctx, func(c *sql.Conn) error {
		tx, err := c.BeginTx(ctx, s.readOpts())
		if err != nil {
			return fmt.Errorf("store: begin read: %w", err)
		}
		defer tx.Rollback() //nolint:errcheck // read-only
		return queryRows(ctx, tx, "published", `SELECT domain, data FROM published ORDER BY domain`, nil, func(rows *sql.Rows) error {
			var (
				d    string
				data sql.RawBytes
			)
			if err := rows.Scan(&d, &data); err != nil {
				return err
			}
			return fn(d, data)
		})
	})
}

// PublishedEntry returns the data of domain's published-policy cache entry,
// and false when there is none: the point query that answers a lookup
// while LoadPublished still runs.
func (s *Store) PublishedEntry(ctx context.Context, domain string) ([]byte, bool, error) {
	r, err := s.reader()
	if err != nil {
		return nil, false, err
	}
	var data []byte
	switch err := r.QueryRowContext(ctx, `SELECT data FROM published WHERE domain = ?`, domain).Scan(&data); {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("store: read published %s: %w", domain, err)
	}
	return data, true, nil
}

// DeletePublished removes the published-policy cache entry of domain.
func (s *Store) DeletePublished(ctx context.Context, domain string) error {
	return s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM published WHERE domain = ?`, domain); err != nil {
			return fmt.Errorf("store: delete published %s: %w", domain, err)
		}
		return nil
	})
}

// PrunePublished removes the entries that expired before t and returns how
// many.
func (s *Store) PrunePublished(ctx context.Context, t time.Time) (int64, error) {
	var n int64
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM published WHERE expires < ?`, t.Unix())
		if err != nil {
			return fmt.Errorf("store: prune published: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// ActiveDomains returns the recipient domains with deliveries (of any
// status) on or after the day of since: the destinations the published
// policy cache refreshes before expiry. It reads the daily rollups.
func (s *Store) ActiveDomains(ctx context.Context, since time.Time) ([]string, error) {
	var out []string
	err := s.read(ctx, func(tx *sql.Tx) error {
		return queryRows(ctx, tx, "active domains", `SELECT DISTINCT rdomain FROM rollup_day WHERE day >= ? ORDER BY rdomain`,
			[]any{floorDiv(since.UnixMicro(), usPerDay)}, func(rows *sql.Rows) error {
				var rd string
				if err := rows.Scan(&rd); err != nil {
					return err
				}
				out = append(out, reverse(rd))
				return nil
			})
	})
	return out, err
}
