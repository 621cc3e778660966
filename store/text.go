package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mailtls/mailtls/delivery"
)

// Text columns. PostgreSQL refuses a NUL byte or invalid UTF-8 in a text
// value, and refuses with it the whole statement: a batch of deliveries
// holding one such field from a hostile log line would fail again at every
// retry and stall the follower. SQLite stores any bytes. So that both
// engines store, and give back, the same text, every free-text value that
// comes from outside (log fields, notes, actors, fetched policy text)
// passes through safeText where it enters the store (prepare for
// deliveries, the override and answer-log writers), whatever the engine.
// Identifiers that must match exactly (override keys, domains of the
// published cache, checkpoint sources, TLSRPT claims) are refused instead
// (checkText), so that none is silently changed into another.

// replacement stands for what safeText replaces: U+FFFD, as logparse
// writes for invalid UTF-8 (strings.ToValidUTF8, one per run of bad bytes).
const replacement = "\uFFFD"

// textOK reports whether s can be stored as it is: valid UTF-8 without NUL.
// It looks at 8 bytes at a time for the usual case, ASCII without NUL: it
// runs on every field of every delivery stored.
func textOK(s string) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		// A byte >= 0x80, or a zero byte (x-lo borrows into its top bit).
		if (x|(x-lo))&hi != 0 {
			break
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c == 0 {
			return false
		} else if c >= utf8.RuneSelf {
			return utf8.ValidString(s[i:]) && strings.IndexByte(s[i:], 0) < 0
		}
	}
	return true
}

// safeText returns s with each run of invalid UTF-8 and each NUL byte
// replaced by U+FFFD; s itself when it is fine.
func safeText(s string) string {
	if textOK(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, replacement), "\x00", replacement)
}

// safeDelivery returns d when every text field of it can be stored, else a
// copy of d with the fields made safe (the caller's delivery is not
// changed).
func safeDelivery(d *delivery.Delivery) *delivery.Delivery {
	if textOK(d.LogHost) && textOK(d.Process) && textOK(d.QueueID) && textOK(d.Recipient) && textOK(d.OrigTo) &&
		textOK(d.Domain) && textOK(d.Relay) && textOK(d.DSN) && textOK(d.Reason) && textOK(string(d.TLSTrust)) &&
		textOK(d.TLSProtocol) && textOK(d.TLSCipher) && textOK(d.TLSFeature) && textOK(d.TLSVerify) && textOK(d.TLSRPT) {
		return d
	}
	c := *d
	for _, f := range [...]*string{&c.LogHost, &c.Process, &c.QueueID, &c.Recipient, &c.OrigTo, &c.Domain, &c.Relay,
		&c.DSN, &c.Reason, &c.TLSProtocol, &c.TLSCipher, &c.TLSFeature, &c.TLSVerify, &c.TLSRPT} {
		*f = safeText(*f)
	}
	c.TLSTrust = delivery.Trust(safeText(string(c.TLSTrust)))
	return &c
}

// reverse returns s spelled backwards by character, the key of a domain in
// the rollups (rdomain): the keys of a domain's subdomains then start with
// its own key, so "example.com and its subdomains" is a key range, on both
// engines (PostgreSQL's reverse() also works by character, and answers
// mailtls_rev there, see pgSQL). Invalid UTF-8 (rows stored before safeText,
// by an older mailtls) counts as U+FFFD, as safeText would have made it.
func reverse(s string) string {
	s = safeText(s)
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	b := make([]byte, 0, len(s))
	if ascii {
		for i := len(s) - 1; i >= 0; i-- {
			b = append(b, s[i])
		}
		return string(b)
	}
	for i := len(s); i > 0; {
		_, n := utf8.DecodeLastRuneInString(s[:i])
		b = append(b, s[i-n:i]...)
		i -= n
	}
	return string(b)
}

// rekeyReversed rewrites the daily rollups of non-ASCII domains, which
// mailtls before schema 10 keyed by the domain reversed byte by byte (and
// so not valid UTF-8): each such key becomes the domain (its bytes in
// order again, made safe as safeText does) reversed by character. Keys
// that become equal (domains that differed only in invalid bytes) merge,
// as the insert path would have counted them. PostgreSQL refused every
// such key, so it holds none; on SQLite the keys are read once (the
// primary key starts with rdomain) and only the non-ASCII ones rewritten.
func rekeyReversed(ctx context.Context, tx *sql.Tx, eng engine) error {
	if eng == engPostgres {
		return nil
	}
	for _, table := range []string{"rollup_day", "rollup_day_internal"} {
		var keys []string
		err := queryRows(ctx, tx, "rollup keys", `SELECT DISTINCT rdomain FROM `+table, nil, func(rows *sql.Rows) error {
			var k []byte // the bytes as stored, whatever their encoding
			if err := rows.Scan(&k); err != nil {
				return err
			}
			for _, c := range k {
				if c >= utf8.RuneSelf || c == 0 {
					keys = append(keys, string(k))
					break
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			continue
		}
		// Through a table of its own, so that a new key equal to an old
		// one not yet rewritten is never rewritten again.
		const cols = `day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, n, first_time, last_time, host_id`
		if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE rekey AS SELECT rdomain, `+cols+` FROM `+table+` WHERE 0`); err != nil {
			return fmt.Errorf("rekey %s: %w", table, err)
		}
		for _, old := range keys {
			b := []byte(old)
			slices.Reverse(b)
			if _, err := tx.ExecContext(ctx, `INSERT INTO rekey SELECT ?, `+cols+` FROM `+table+` WHERE rdomain = ?`, reverse(string(b)), old); err != nil {
				return fmt.Errorf("rekey %s: %w", table, err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE rdomain = ?`, old); err != nil {
				return fmt.Errorf("rekey %s: %w", table, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+table+`(rdomain, `+cols+`) SELECT rdomain, `+cols+` FROM rekey WHERE true
ON CONFLICT(rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, host_id) DO UPDATE
SET n = `+table+`.n + excluded.n, first_time = min(`+table+`.first_time, excluded.first_time), last_time = max(`+table+`.last_time, excluded.last_time);
DROP TABLE rekey`); err != nil {
			return fmt.Errorf("rekey %s: %w", table, err)
		}
	}
	return nil
}
