package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// claimsSchema is the migration that adds refresh claims on the published
// cache: in a fleet the daemons of every host share one cache (the
// published table), and before one of them resolves a destination it
// claims the refresh, so that the others wait for its answer instead of
// resolving the same destination again. A claim ends when its holder
// releases it or at until, so a holder that dies holds nothing for long.
const claimsSchema = `
CREATE TABLE published_claims (
	domain TEXT PRIMARY KEY,
	holder TEXT NOT NULL,     -- who resolves: host name, process and a random part
	until  INTEGER NOT NULL   -- unix microseconds: the claim lapses then
) WITHOUT ROWID;
`

// ClaimRefresh claims the refresh of domain's published entry for holder
// until the given time. It returns false when another holder's claim
// has not lapsed at now; a holder may renew its own claim.
func (s *Store) ClaimRefresh(ctx context.Context, domain, holder string, now, until time.Time) (bool, error) {
	if err := checkText("claimed domain", domain, false); err != nil {
		return false, err
	}
	if err := checkText("claim holder", holder, false); err != nil {
		return false, err
	}
	claimed := false
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO published_claims(domain, holder, until) VALUES (?, ?, ?)
ON CONFLICT(domain) DO UPDATE SET holder = excluded.holder, until = excluded.until
	WHERE published_claims.until <= ? OR published_claims.holder = excluded.holder`,
			domain, holder, until.UnixMicro(), now.UnixMicro())
		if err != nil {
			return fmt.Errorf("store: claim the refresh of %s: %w", domain, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("store: claim the refresh of %s: %w", domain, err)
		}
		claimed = n == 1
		return nil
	})
	return claimed, err
}

// ReleaseRefresh ends holder's claim on domain, if it still holds it.
func (s *Store) ReleaseRefresh(ctx context.Context, domain, holder string) error {
	return s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM published_claims WHERE domain = ? AND holder = ?`, domain, holder); err != nil {
			return fmt.Errorf("store: release the refresh of %s: %w", domain, err)
		}
		return nil
	})
}
