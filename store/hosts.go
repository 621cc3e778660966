package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/mailtls/mailtls/dnsname"
)

// Fleet hosts. Every delivery and every follower checkpoint belongs to the
// fleet host that wrote it: the name a mailtls process writes as (--host,
// default the machine's host name; see SetHost), not the host field of
// the log line (delivery.Delivery.LogHost). The hosts table numbers the names, and
// deliveries, checkpoints and rollups carry the number (host_id).
//
// Exactly once per host: a delivery's stored key is the time and SHA-256
// of its log line (appendStoredKey), followed, for every host but host 0, by the
// host's number (4 bytes, big-endian). The key column is unique, so a line
// is stored once per host, and the same line (the same queue ID) on two
// hosts is two deliveries. Host 0 keeps the keys of schema version 7, so a
// database upgraded to version 8 that re-imports its old logs adds nothing.
//
// Host 0 is the host of the rows stored before version 8 (and, in a new
// database, the first host to write). The upgrade cannot know its name,
// so it starts unclaimed (name ''): the first process that writes to the
// upgraded database (run, follow or import; SetHost) claims it under its
// own name, with the deliveries, rollups and checkpoints stored before,
// so that a follower restarted on the new version resumes from its
// checkpoint. Until then, reports show it as UnclaimedHost.

// UnclaimedHost is how reports and status name host 0 before a writer
// has claimed it (see above). It is not a valid host name.
const UnclaimedHost = "(unclaimed)"

// hostsSchema is migration 8: see the comment above and migrate.go. The
// rollups and checkpoints get host_id in their primary keys, so they are
// rebuilt (they are small: rollups hold one row per domain, day and TLS
// outcome); deliveries get a column, which rewrites nothing. Deliveries
// stored before keep host_id 0 and their keys.
const hostsSchema = `
CREATE TABLE hosts (
	id   INTEGER PRIMARY KEY,  -- assigned by the store: 0 first, then max + 1
	name TEXT NOT NULL UNIQUE  -- '' while host 0 is unclaimed
);
INSERT INTO hosts(id, name) VALUES (0, '');

ALTER TABLE deliveries ADD COLUMN host_id INTEGER NOT NULL DEFAULT 0;

CREATE TABLE checkpoints_v8 (
	host_id INTEGER NOT NULL,
	source  TEXT NOT NULL,
	data    BLOB NOT NULL,
	updated INTEGER NOT NULL,  -- unix seconds
	PRIMARY KEY (host_id, source)
);
INSERT INTO checkpoints_v8(host_id, source, data, updated) SELECT 0, source, data, updated FROM checkpoints;
DROP TABLE checkpoints;
ALTER TABLE checkpoints_v8 RENAME TO checkpoints;

CREATE TABLE rollup_day_v8 (
	rdomain     TEXT NOT NULL,
	day         INTEGER NOT NULL,
	status      TEXT NOT NULL,
	tls         INTEGER NOT NULL,
	trust       TEXT NOT NULL,
	protocol    TEXT NOT NULL,
	cipher      TEXT NOT NULL,
	fallback    INTEGER NOT NULL,
	tls_failure INTEGER NOT NULL,
	relay_host  TEXT NOT NULL,
	relay_port  INTEGER NOT NULL,
	n           INTEGER NOT NULL,
	first_time  INTEGER NOT NULL,
	last_time   INTEGER NOT NULL,
	host_id     INTEGER NOT NULL,
	PRIMARY KEY (rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, host_id)
) WITHOUT ROWID;
INSERT INTO rollup_day_v8(rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, n, first_time, last_time, host_id)
	SELECT rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, n, first_time, last_time, 0 FROM rollup_day;
DROP TABLE rollup_day;
ALTER TABLE rollup_day_v8 RENAME TO rollup_day;
CREATE INDEX rollup_day_day ON rollup_day(day);
CREATE INDEX rollup_day_first_enc ON rollup_day(rdomain, first_time) WHERE status = 'sent' AND tls = 1;
CREATE INDEX rollup_day_relay ON rollup_day(relay_host, relay_port, day);

CREATE TABLE rollup_day_internal_v8 (
	rdomain     TEXT NOT NULL,
	day         INTEGER NOT NULL,
	status      TEXT NOT NULL,
	tls         INTEGER NOT NULL,
	trust       TEXT NOT NULL,
	protocol    TEXT NOT NULL,
	cipher      TEXT NOT NULL,
	fallback    INTEGER NOT NULL,
	tls_failure INTEGER NOT NULL,
	relay_host  TEXT NOT NULL,
	relay_port  INTEGER NOT NULL,
	n           INTEGER NOT NULL,
	first_time  INTEGER NOT NULL,
	last_time   INTEGER NOT NULL,
	host_id     INTEGER NOT NULL,
	PRIMARY KEY (rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, host_id)
) WITHOUT ROWID;
INSERT INTO rollup_day_internal_v8(rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, n, first_time, last_time, host_id)
	SELECT rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, n, first_time, last_time, 0 FROM rollup_day_internal;
DROP TABLE rollup_day_internal;
ALTER TABLE rollup_day_internal_v8 RENAME TO rollup_day_internal;
CREATE INDEX rollup_day_internal_day ON rollup_day_internal(day);

CREATE TABLE rollup_hour_v8 (
	hour        INTEGER NOT NULL,
	status      TEXT NOT NULL,
	tls         INTEGER NOT NULL,
	trust       TEXT NOT NULL,
	protocol    TEXT NOT NULL,
	cipher      TEXT NOT NULL,
	fallback    INTEGER NOT NULL,
	tls_failure INTEGER NOT NULL,
	n           INTEGER NOT NULL,
	host_id     INTEGER NOT NULL,
	PRIMARY KEY (hour, status, tls, trust, protocol, cipher, fallback, tls_failure, host_id)
) WITHOUT ROWID;
INSERT INTO rollup_hour_v8(hour, status, tls, trust, protocol, cipher, fallback, tls_failure, n, host_id)
	SELECT hour, status, tls, trust, protocol, cipher, fallback, tls_failure, n, 0 FROM rollup_hour;
DROP TABLE rollup_hour;
ALTER TABLE rollup_hour_v8 RENAME TO rollup_hour;

CREATE TABLE rollup_hour_internal_v8 (
	hour        INTEGER NOT NULL,
	status      TEXT NOT NULL,
	tls         INTEGER NOT NULL,
	trust       TEXT NOT NULL,
	protocol    TEXT NOT NULL,
	cipher      TEXT NOT NULL,
	fallback    INTEGER NOT NULL,
	tls_failure INTEGER NOT NULL,
	n           INTEGER NOT NULL,
	host_id     INTEGER NOT NULL,
	PRIMARY KEY (hour, status, tls, trust, protocol, cipher, fallback, tls_failure, host_id)
) WITHOUT ROWID;
INSERT INTO rollup_hour_internal_v8(hour, status, tls, trust, protocol, cipher, fallback, tls_failure, n, host_id)
	SELECT hour, status, tls, trust, protocol, cipher, fallback, tls_failure, n, 0 FROM rollup_hour_internal;
DROP TABLE rollup_hour_internal;
ALTER TABLE rollup_hour_internal_v8 RENAME TO rollup_hour_internal;
`

// hostSQL is the condition "written by the named host" over any table with
// a host_id column; its one argument is the name. An unknown name matches
// nothing.
const hostSQL = `host_id = (SELECT id FROM hosts WHERE name = ?)`

// CheckHost validates a fleet host name and returns it lowercased: a
// host-name-like token of letters, digits, hyphens and underscores in
// dot-separated labels (package dnsname's rule), at most 253 bytes.
func CheckHost(name string) (string, error) {
	h := strings.ToLower(strings.TrimSpace(name))
	if err := dnsname.Check(h); err != nil {
		return "", fmt.Errorf("%w: host name %q: %v; accepted: a host name such as mx1 or mx1.example.com (letters, digits, '-', '_' and dots, at most 253 characters)", ErrBadInput, name, err)
	}
	return h, nil
}

// DefaultHost is the fleet host name of this machine: os.Hostname,
// lowercased, when it is a valid host name (CheckHost).
func DefaultHost() (string, error) {
	n, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("%w: the machine's host name is unknown (%v); name this host with --host", ErrBadInput, err)
	}
	h, err := CheckHost(n)
	if err != nil {
		return "", fmt.Errorf("%w: the machine's host name %q is not a valid fleet host name; name this host with --host (letters, digits, '-', '_' and dots)", ErrBadInput, n)
	}
	return h, nil
}

// SetHost sets the fleet host this Store writes as (deliveries,
// checkpoints) and registers it in the database, claiming host 0 when it
// is still unclaimed (see above). Call it before writing; without it a
// Store writes as DefaultHost.
func (s *Store) SetHost(ctx context.Context, name string) error {
	h, err := CheckHost(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.host, s.hostErr = h, nil
	s.mu.Unlock()
	return s.withTx(ctx, func(tx *sql.Tx) error {
		_, err := s.hostID(ctx, tx)
		return err
	})
}

// Host returns the fleet host this Store writes as, or "" when it has none
// (DefaultHost failed and SetHost was not called).
func (s *Store) Host() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.host
}

// hostID returns the number of the Store's host inside the write
// transaction tx, registering the host first when needed: it claims host
// 0 while that is unclaimed, and otherwise takes the next number.
func (s *Store) hostID(ctx context.Context, tx *sql.Tx) (int64, error) {
	s.mu.RLock()
	name, herr := s.host, s.hostErr
	s.mu.RUnlock()
	if name == "" {
		return 0, fmt.Errorf("store: no fleet host to write as: %w", herr)
	}
	var id int64
	err := tx.QueryRowContext(ctx, `SELECT id FROM hosts WHERE name = ?`, name).Scan(&id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("store: host %s: %w", name, err)
	}
	res, err := tx.ExecContext(ctx, `UPDATE hosts SET name = ? WHERE id = 0 AND name = ''`, name)
	if err != nil {
		return 0, fmt.Errorf("store: claim host 0 for %s: %w", name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return 0, fmt.Errorf("store: claim host 0 for %s: %w", name, err)
	} else if n == 1 {
		return 0, nil
	}
	// The write transaction is the only writer, so max + 1 is free.
	if _, err := tx.ExecContext(ctx, `INSERT INTO hosts(id, name) SELECT coalesce(max(id), -1) + 1, ? FROM hosts`, name); err != nil {
		return 0, fmt.Errorf("store: register host %s: %w", name, err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT id FROM hosts WHERE name = ?`, name).Scan(&id); err != nil {
		return 0, fmt.Errorf("store: register host %s: %w", name, err)
	}
	return id, nil
}

// hostNames returns the names of the hosts by number, host 0 as
// UnclaimedHost while unclaimed.
func hostNames(ctx context.Context, tx *sql.Tx) (map[int64]string, error) {
	names := map[int64]string{}
	err := queryRows(ctx, tx, "hosts", `SELECT id, name FROM hosts`, nil, func(rows *sql.Rows) error {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return err
		}
		if name == "" {
			name = UnclaimedHost
		}
		names[id] = name
		return nil
	})
	return names, err
}

// appendKeySuffix appends to a stored key the part that tells host id
// apart (see above): nothing for host 0.
func appendKeySuffix(k []byte, id int64) []byte {
	if id == 0 {
		return k
	}
	return binary.BigEndian.AppendUint32(k, uint32(id))
}

// ErrSourceLocked is returned by LockSource when another follower holds
// the same host and source.
var ErrSourceLocked = errors.New("store: another follower is running")

// LockSource takes the lock of one follower: one host name, one log source
// (the checkpoint's source). It fails with ErrSourceLocked while another
// process (or another LockSource in this one) holds it. The lock is an
// flock(2) on a file beside the database, named after a hash of host and
// source, so that it goes away with the process that holds it, however
// that process ends. release gives it back.
func (s *Store) LockSource(ctx context.Context, host, source string) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(host + "\x00" + source))
	if s.eng == engPostgres {
		return s.lockSourcePG(ctx, host, source, int64(binary.BigEndian.Uint64(sum[:8])))
	}
	path := fmt.Sprintf("%s.follower-%x.lock", s.path, sum[:8])
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
	writable := err == nil
	if errors.Is(err, fs.ErrPermission) {
		// Made by another user (root, before the service ran as its
		// own): flock needs no write access.
		f, err = os.Open(path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: lock follower of %s as host %s: %w", source, host, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w as host %s on %s (lock %s held): stop it, or give this one another --host",
				ErrSourceLocked, host, source, filepath.Base(path))
		}
		return nil, fmt.Errorf("store: lock follower of %s as host %s: %w", source, host, err)
	}
	// For whoever looks at the file: who holds it.
	if writable && f.Truncate(0) == nil {
		_, _ = fmt.Fprintf(f, "host %s\nsource %s\npid %d\n", host, source, os.Getpid())
	}
	return func() { f.Close() }, nil
}
