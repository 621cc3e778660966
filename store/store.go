// Package store keeps mailtls state in one SQLite database: TLS policy
// overrides with their change history, the deliveries parsed from the mail
// log together with the log follower's checkpoint, and the daily/hourly
// rollups that make TLS coverage reports fast.
//
// The database runs in WAL mode (https://www.sqlite.org/wal.html) so that
// readers (the policy daemon, reports) never block the single writer (the log
// follower or the CLI). All SQL text is constant; user data only ever travels
// as bound parameters.
//
// Times are stored as integers in UTC: deliveries in unix microseconds,
// overrides, history and checkpoints in unix seconds.
//
// Reports never scan every delivery. Each batch of deliveries updates, in
// the same transaction, a daily rollup per recipient domain (rollup_day) and
// an hourly rollup over all domains (rollup_hour), counting only the rows
// the batch actually inserted. A report window is answered exactly: whole
// days (or hours) from a rollup, and the partial first and last day (hour)
// from the raw rows through the time index.
//
// Domain filters: "example.com" is that domain only, "*.example.com" is
// example.com and all its subdomains, ".example.com" its subdomains only
// (the Postfix policy-table meaning of a leading dot).
//
// To replace the database under a running daemon, delete or move the
// -wal and -shm files together with the database file.
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Sentinel errors. Callers test them with errors.Is.
var (
	// ErrNotFound is returned when an override to change or remove does not exist.
	ErrNotFound = errors.New("store: override not found")
	// ErrSchemaTooNew is returned by Open when the database was written by a
	// newer mailtls that knows schema versions this binary does not.
	ErrSchemaTooNew = errors.New("store: database schema is newer than this mailtls")
	// ErrBadInput is returned for invalid arguments (bad key, empty policy,
	// unknown report dimension, ...). The wrapping message says what was wrong.
	ErrBadInput = errors.New("store: invalid input")
	// ErrUnavailable is returned by OverridesVersion when the database file
	// can not be reached; the caller should keep its last snapshot.
	ErrUnavailable = errors.New("store: database unavailable")
	// ErrPruneRunning is returned by Prune on a PostgreSQL database where
	// another process (another host of the fleet) is pruning already.
	ErrPruneRunning = errors.New("store: another prune is running on this database")
)

// BadInputText is the message of an ErrBadInput error without the
// store's prefix, for a caller that names the flag or parameter itself.
func BadInputText(err error) string {
	return strings.TrimPrefix(err.Error(), ErrBadInput.Error()+": ")
}

const (
	dirMode  = 0o750
	fileMode = 0o640
	// busyTimeoutMS is how long a connection waits for a lock held by
	// another connection or process before SQLITE_BUSY.
	busyTimeoutMS = 5000
	// maxReaders bounds the read pool. WAL readers run concurrently with
	// the single writer; the machine this runs on is small.
	maxReaders = 4
	// walAutocheckpointBytes: the writer checkpoints every 32 MiB of WAL
	// rather than SQLite's 1000 pages, so hot pages (rollups, index
	// tails) are copied back once for many commits.
	walAutocheckpointBytes = 32 << 20
	// pageSize is the page size of new databases (see openHandles).
	pageSize = 32768
	// writerCacheKiB is the writer's page cache.
	writerCacheKiB = 8192
)

// Store is a handle on the mailtls database. It is safe for concurrent use.
type Store struct {
	path string // the file, or the redacted DSN
	eng  engine
	// pgcfg is the connection configuration of a PostgreSQL store (the
	// change listener opens connections of its own).
	pgcfg *pgx.ConnConfig

	mu    sync.RWMutex
	h     *handles
	epoch uint64 // bumped each time the file is reopened after replacement

	// now is the clock used for override timestamps; tests replace it.
	now func() time.Time

	// host is the fleet host this Store writes as (SetHost, see hosts.go),
	// "" when DefaultHost failed with hostErr. Under mu.
	host    string
	hostErr error
}

// handles are the two connection pools on one database file.
type handles struct {
	w        *sql.DB // exactly one connection: SQLite has one writer
	r        *sql.DB // WAL readers
	dev, ino uint64  // identity of the file the pools were opened on
}

// drv is a private driver so that the helper function and the connection
// hook below reach only mailtls connections.
var drv = func() *sqlite.Driver {
	d := &sqlite.Driver{}
	// mailtls_rev reverses a string. Rollups key domains by their reversed
	// spelling so that "all subdomains of example.com" is an index range;
	// queries that combine rollups with raw rows use this to line them up.
	// The schema itself does not reference the function, so the database
	// stays usable from the sqlite3 shell.
	d.MustRegisterDeterministicScalarFunction("mailtls_rev", 1, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		switch v := args[0].(type) {
		case string:
			return reverse(v), nil
		case []byte:
			return reverse(string(v)), nil
		default:
			return v, nil
		}
	})
	d.RegisterConnectionHook(func(c sqlite.ExecQuerierContext, _ string) error {
		// With persistent WAL, closing the last connection never unlinks
		// the -wal/-shm files by name. Without it, a daemon still holding a
		// database that was deleted and recreated under the same path would
		// delete the new database's WAL on close.
		fc, ok := c.(sqlite.FileControl)
		if !ok {
			return errors.New("sqlite connection lacks FileControl")
		}
		_, err := fc.FileControlPersistWAL("main", 1)
		return err
	})
	return d
}()

type connector struct{ dsn string }

func (c connector) Connect(context.Context) (driver.Conn, error) { return drv.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return drv }

// Open opens (creating if needed) the database at path, applies pending
// schema migrations and returns a Store. The parent directory is created
// with mode 0750 and a new database file with mode 0640; SQLite gives the
// -wal and -shm files the mode of the database file.
//
// A path that is a PostgreSQL DSN (postgres://..., postgresql://..., or
// libpq's key=value form, "host=... dbname=...") opens that database
// instead, through pgx; its options (sslmode, sslrootcert, ...) are pgx's.
// The schema is the same, set up by the same numbered migrations, taken
// under an advisory lock. A malformed DSN gets an error wrapping
// ErrBadInput that names the part that is wrong; no error or Path holds
// the password.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: empty database path", ErrBadInput)
	}
	if isDSN(path) {
		return openPostgres(ctx, path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), dirMode); err != nil {
		return nil, fmt.Errorf("store: create directory for %s: %w", abs, err)
	}
	// Create the file ourselves so its mode does not depend on SQLite's
	// default (0644 minus umask).
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
	switch {
	case err == nil:
		chmodErr := f.Chmod(fileMode) // umask may have removed bits
		if err := errors.Join(chmodErr, f.Close()); err != nil {
			return nil, fmt.Errorf("store: create %s: %w", abs, err)
		}
	case errors.Is(err, os.ErrExist):
	default:
		return nil, fmt.Errorf("store: create %s: %w", abs, err)
	}
	s := &Store{path: abs, now: time.Now}
	s.host, s.hostErr = DefaultHost()
	h, err := openHandles(ctx, abs)
	if err != nil {
		return nil, err
	}
	s.h = h
	return s, nil
}

// dsn builds a SQLite URI for path. mode=rw makes SQLite fail instead of
// silently creating an empty database when the file has gone away.
func dsn(path string, reader bool, ckptPages int) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	q := []string{
		"mode=rw",
		fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeoutMS),
		"_pragma=foreign_keys(1)",
		"_pragma=synchronous(NORMAL)",
		"_pragma=temp_store(MEMORY)",
		// Truncate the WAL when the last connection closes (persistent
		// WAL, see drv), so no stale WAL outlives a deleted database.
		"_pragma=journal_size_limit(67108864)",
	}
	if reader {
		q = append(q, "_pragma=query_only(1)",
			fmt.Sprintf("_pragma=cache_size(-%d)", readerCacheKiB),
			fmt.Sprintf("_pragma=mmap_size(%d)", readerMmap))
	} else {
		// The writer keeps a small cache and no mmap, so that a bulk
		// import stays well under 100 MB of memory. A 1M-line import
		// measured no faster with 16 MiB than with 8; the Go heap makes
		// better use of the memory (see import).
		q = append(q, fmt.Sprintf("_pragma=cache_size(-%d)", writerCacheKiB), "_pragma=mmap_size(0)")
		// Take the write lock at BEGIN so a transaction never fails
		// half-way when upgrading from a read lock.
		q = append(q, "_txlock=immediate",
			fmt.Sprintf("_pragma=wal_autocheckpoint(%d)", ckptPages))
	}
	return "file:" + esc + "?" + strings.Join(q, "&")
}

func openHandles(ctx context.Context, path string) (*handles, error) {
	dev, ino, err := fileID(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, path, err)
	}
	ps, err := filePageSize(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, path, err)
	}
	w := sql.OpenDB(connector{dsn(path, false, walAutocheckpointBytes/ps)})
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	// A new database gets larger pages than SQLite's 4 KiB default: each
	// page is written to the WAL and copied back with its own system
	// calls, and a bulk import of 1M log lines takes 1.19 s with 32 KiB
	// pages, 1.27 s with 16 KiB and 1.49 s with 4 KiB. A small commit
	// writes more bytes: 645 KB for five deliveries into a 200k-row
	// database, against 374 KB (16 KiB) and 136 KB (4 KiB); the log
	// follower therefore commits at most once a second (SettleFor), where
	// it committed at every poll, four times a second. The page size can
	// only be chosen while the database is empty.
	// A new database is set up under locks that SQLite does not wait for
	// (its busy handler gives up at once where waiting could deadlock), so
	// a second process opening it at the same moment (`mailtls status`
	// beside a starting `mailtls run`) can get SQLITE_BUSY: each step is
	// idempotent, so the setup is tried again until busyTimeoutMS.
	deadline := time.Now().Add(busyTimeoutMS * time.Millisecond)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		err := setUp(ctx, w)
		if err == nil {
			break
		}
		if !isBusy(err) || time.Now().After(deadline) {
			w.Close()
			return nil, fmt.Errorf("store: open %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			w.Close()
			return nil, fmt.Errorf("store: open %s: %w", path, errors.Join(err, ctx.Err()))
		case <-time.After(wait):
		}
	}
	r := sql.OpenDB(connector{dsn(path, true, 0)})
	r.SetMaxOpenConns(maxReaders)
	r.SetMaxIdleConns(2)
	r.SetConnMaxIdleTime(5 * time.Minute)
	return &handles{w: w, r: r, dev: dev, ino: ino}, nil
}

// setUp gives a new database its page size, puts the database in WAL mode
// and applies pending migrations.
func setUp(ctx context.Context, w *sql.DB) error {
	var pages int
	if err := w.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		return err
	}
	if pages == 0 {
		// The cache was sized in pages of the old size: size it again.
		for _, q := range []string{fmt.Sprintf("PRAGMA page_size = %d", pageSize), fmt.Sprintf("PRAGMA cache_size = -%d", writerCacheKiB)} {
			if _, err := w.ExecContext(ctx, q); err != nil {
				return err
			}
		}
	}
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("could not enable WAL mode (journal_mode=%s)", mode)
	}
	return migrate(ctx, w, engSQLite)
}

// isBusy reports whether err is SQLite's SQLITE_BUSY (any extended code).
func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// filePageSize returns the page size recorded in the header of the
// database file at path, or pageSize when the file is still empty.
func filePageSize(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var hdr [18]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return pageSize, nil // new; anything else short fails in SQLite
		}
		return 0, err
	}
	switch ps := int(binary.BigEndian.Uint16(hdr[16:])); {
	case ps == 1:
		return 65536, nil
	case ps >= 512 && ps&(ps-1) == 0:
		return ps, nil
	}
	return pageSize, nil // not a database: SQLite will say so
}

func (h *handles) close() error {
	return errors.Join(h.r.Close(), h.w.Close())
}

func fileID(path string) (dev, ino uint64, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, nil
	}
	return uint64(st.Dev), st.Ino, nil //nolint:unconvert // Dev is not uint64 everywhere
}

// Close closes the database. It is safe to call more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h == nil {
		return nil
	}
	err := s.h.close()
	s.h = nil
	return err
}

// Path returns the absolute path of the database file, or the DSN of a
// PostgreSQL database with its password redacted.
func (s *Store) Path() string { return s.path }

var errClosed = errors.New("store: closed")

func (s *Store) handles() (*handles, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.h == nil {
		return nil, errClosed
	}
	return s.h, nil
}

func (s *Store) writer() (*sql.DB, error) {
	h, err := s.handles()
	if err != nil {
		return nil, err
	}
	return h.w, nil
}

func (s *Store) reader() (*sql.DB, error) {
	h, err := s.handles()
	if err != nil {
		return nil, err
	}
	return h.r, nil
}

// refresh reopens the pools when the file at s.path is no longer the one
// they were opened on (deleted and recreated, or replaced by rename). It
// returns the epoch in force afterwards.
func (s *Store) refresh(ctx context.Context) (uint64, *handles, error) {
	if s.eng == engPostgres {
		h, err := s.handles()
		return 0, h, err
	}
	dev, ino, err := fileID(s.path)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, s.path, err)
	}
	s.mu.RLock()
	h, epoch := s.h, s.epoch
	s.mu.RUnlock()
	if h == nil {
		return 0, nil, errClosed
	}
	if h.dev == dev && h.ino == ino {
		return epoch, h, nil
	}
	s.mu.Lock()
	if s.h == nil {
		s.mu.Unlock()
		return 0, nil, errClosed
	}
	if s.h != h { // another goroutine already reopened
		epoch, h = s.epoch, s.h
		s.mu.Unlock()
		return epoch, h, nil
	}
	nh, err := openHandles(ctx, s.path)
	if err != nil {
		s.mu.Unlock()
		return 0, nil, fmt.Errorf("%w: reopen: %w", ErrUnavailable, err)
	}
	s.h = nh
	s.epoch++
	epoch = s.epoch
	s.mu.Unlock()
	// Close outside the lock: it waits for queries in flight on the old
	// pools, and new callers already use the new ones.
	_ = h.close()
	return epoch, nh, nil
}

// withTx runs fn in a write transaction and commits it, or rolls back if fn
// or the commit fails.
func (s *Store) withTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	w, err := s.writer()
	if err != nil {
		return err
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, rollback(tx))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

func rollback(tx *sql.Tx) error {
	if err := tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("store: rollback: %w", err)
	}
	return nil
}

// ActorFromEnv names the person making a change, for the override history:
// $SUDO_USER when run through sudo, else $USER, else the name of the
// process's user (cron jobs and systemd units often have no $USER), else
// "uid N".
func ActorFromEnv() string { return Actor(os.Getenv) }

// Actor is ActorFromEnv with the environment given as a function.
func Actor(getenv func(string) string) string {
	for _, v := range []string{"SUDO_USER", "USER"} {
		if a := strings.TrimSpace(getenv(v)); a != "" {
			return a
		}
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}

// CacheBytes is the memory the store keeps in this process outside the Go
// heap while an import writes: on SQLite the writer's page cache
// (writerCacheKiB) and as much again in SQLite's C heap (statements,
// bound values; measured: an import's peak RSS is that of the Go heap's
// limit less this, plus the binary, as on PostgreSQL, which keeps none).
func (s *Store) CacheBytes() int64 {
	if s.eng == engPostgres {
		return 0
	}
	return 2 * writerCacheKiB << 10
}
