package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// tlsrptSchema is migration 7: which TLSRPT reports (RFC 8460) were sent,
// one row per (policy domain, UTC day, rua URI), so that a report goes to
// each rua at most once, whatever reruns or crashes happen.
const tlsrptSchema = `
CREATE TABLE tlsrpt_sends (
	domain   TEXT NOT NULL,
	day      TEXT NOT NULL,     -- YYYY-MM-DD (UTC)
	rua      TEXT NOT NULL,
	state    TEXT NOT NULL,     -- sending | sent | failed
	attempts INTEGER NOT NULL,
	last_try INTEGER NOT NULL,  -- unix seconds
	error    TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (domain, day, rua)
) WITHOUT ROWID;
CREATE INDEX tlsrpt_sends_failed ON tlsrpt_sends(day) WHERE state = 'failed';
`

// States of a TLSRPT send.
const (
	// TLSRPTSending: claimed, and the outcome was not recorded (the
	// process stopped while sending). It is never retried: the report may
	// have gone out, and at most once is the rule.
	TLSRPTSending = "sending"
	TLSRPTSent    = "sent"
	// TLSRPTFailed: the send failed; a later run may retry it.
	TLSRPTFailed = "failed"
)

// TLSRPTSend is the record of one report's sending to one rua.
type TLSRPTSend struct {
	Domain   string
	Day      string // YYYY-MM-DD
	RUA      string
	State    string
	Attempts int
	LastTry  time.Time
	Error    string
}

// ClaimTLSRPTSend records, before the report is sent, that (domain, day,
// rua) is being sent, and says whether the caller may send it: yes when
// nothing was recorded yet, or the last attempt failed and retry is true;
// no when it was sent, or a send is (or was, before a crash) under way.
// The claim commits before the caller sends, so that no rerun sends
// twice.
func (s *Store) ClaimTLSRPTSend(ctx context.Context, domain, day, rua string, retry bool) (bool, error) {
	for what, v := range map[string]string{"TLSRPT domain": domain, "TLSRPT day": day, "TLSRPT rua": rua} {
		if err := checkText(what, v, false); err != nil {
			return false, err
		}
	}
	claimed := false
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		claimed = false
		if err := s.serialize(ctx, tx, pgTLSRPTLock); err != nil {
			return err
		}
		var state string
		err := tx.QueryRowContext(ctx, `SELECT state FROM tlsrpt_sends WHERE domain = ? AND day = ? AND rua = ?`, domain, day, rua).Scan(&state)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = tx.ExecContext(ctx, `INSERT INTO tlsrpt_sends(domain, day, rua, state, attempts, last_try) VALUES (?, ?, ?, ?, 1, ?)`,
				domain, day, rua, TLSRPTSending, s.now().Unix())
		case err != nil:
		case state == TLSRPTFailed && retry:
			_, err = tx.ExecContext(ctx, `UPDATE tlsrpt_sends SET state = ?, attempts = attempts + 1, last_try = ? WHERE domain = ? AND day = ? AND rua = ?`,
				TLSRPTSending, s.now().Unix(), domain, day, rua)
		default:
			return nil
		}
		if err != nil {
			return fmt.Errorf("store: claim TLSRPT send %s %s %s: %w", domain, day, rua, err)
		}
		claimed = true
		return nil
	})
	return claimed, err
}

// FinishTLSRPTSend records the outcome of a claimed send: sent when
// sendErr is nil, else failed with its text.
func (s *Store) FinishTLSRPTSend(ctx context.Context, domain, day, rua string, sendErr error) error {
	state, msg := TLSRPTSent, ""
	if sendErr != nil {
		state, msg = TLSRPTFailed, safeText(sendErr.Error())
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tlsrpt_sends SET state = ?, error = ? WHERE domain = ? AND day = ? AND rua = ? AND state = ?`,
			state, msg, domain, day, rua, TLSRPTSending)
		if err != nil {
			return fmt.Errorf("store: finish TLSRPT send %s %s %s: %w", domain, day, rua, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("store: finish TLSRPT send %s %s %s: no send under way", domain, day, rua)
		}
		return nil
	})
}

// TLSRPTSends returns the send records of the days from since to until
// (YYYY-MM-DD, inclusive), in (day, domain, rua) order.
func (s *Store) TLSRPTSends(ctx context.Context, since, until string) ([]TLSRPTSend, error) {
	var out []TLSRPTSend
	err := s.read(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		return queryRows(ctx, tx, "TLSRPT sends", `SELECT domain, day, rua, state, attempts, last_try, error FROM tlsrpt_sends
			WHERE day >= ? AND day <= ? ORDER BY day, domain, rua`, []any{since, until}, func(rows *sql.Rows) error {
			var (
				r  TLSRPTSend
				at int64
			)
			if err := rows.Scan(&r.Domain, &r.Day, &r.RUA, &r.State, &r.Attempts, &at, &r.Error); err != nil {
				return err
			}
			r.LastTry = time.Unix(at, 0).UTC()
			out = append(out, r)
			return nil
		})
	})
	return out, err
}
