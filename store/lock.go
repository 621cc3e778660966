package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// LockFile takes the write lock of the database at path from a connection
// of its own, as another program holding the database open (a backup, the
// sqlite3 shell) would, and holds it until release is called; other
// writers wait for it (busy timeout) and then fail. With exclusive it also
// asks for SQLite's exclusive locking mode, which tries to lock readers
// out too. It is for fault tests (bench/cmd/faults), which must not speak
// SQL themselves.
func LockFile(ctx context.Context, path string, exclusive bool) (release func() error, err error) {
	db := sql.OpenDB(connector{dsn(path, false, 0)})
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: lock %s: %w", path, err)
	}
	stmts := []string{"BEGIN IMMEDIATE", "UPDATE meta SET name = name WHERE 0"}
	if exclusive {
		stmts = []string{"PRAGMA locking_mode=EXCLUSIVE", "BEGIN EXCLUSIVE", "UPDATE meta SET name = name WHERE 0"}
	}
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			conn.Close()
			db.Close()
			return nil, fmt.Errorf("store: lock %s: `%s`: %w", path, s, err)
		}
	}
	return func() error {
		_, err := conn.ExecContext(ctx, "ROLLBACK")
		if exclusive {
			_, e := conn.ExecContext(ctx, "PRAGMA locking_mode=NORMAL")
			err = errors.Join(err, e)
			// The exclusive lock is only dropped at the next access.
			_, e = conn.ExecContext(ctx, "SELECT count(*) FROM meta")
			err = errors.Join(err, e)
		}
		return errors.Join(err, conn.Close(), db.Close())
	}, nil
}
