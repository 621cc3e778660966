package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
)

// wtx is a write transaction on the writer connection, pinned for its
// duration so that delivery inserts can run as driver statements: through
// database/sql every argument of every call is checked and converted again,
// a tenth of a bulk import's writer time.
type wtx struct {
	*sql.Tx
	conn  *sql.Conn
	stmts map[string]driver.Stmt
	eng   engine
	// ckpt is the connection's automatic checkpoint interval (pages),
	// when begin turned it off for a bulk transaction; 0 otherwise.
	ckpt int
	// copySavepoint: the savepoint of copyDirect is set (PostgreSQL).
	copySavepoint bool
	// horizonRead: the pruning horizon was read, and is horizonValue.
	horizonRead  bool
	horizonValue int64
	// args is insertBatch's buffer of insert arguments (SQLite).
	args []driver.NamedValue
}

// horizon returns the pruning horizon (see Prune), which a transaction
// reads once: on SQLite no other writer can change it until the
// transaction ends, and on PostgreSQL the transaction holds pgHorizonLock
// shared from this read on, which Prune's change waits for. Reading it
// once rather than per batch spares an import a round trip a batch.
func (t *wtx) horizon(ctx context.Context) (int64, error) {
	if t.horizonRead {
		return t.horizonValue, nil
	}
	var h int64
	var err error
	if t.eng == engPostgres {
		h, err = pgHorizonShared(ctx, t)
	} else {
		h, err = horizon(ctx, t.Tx)
	}
	if err != nil {
		return 0, err
	}
	t.horizonRead, t.horizonValue = true, h
	return h, nil
}

// begin starts a write transaction. With bulk, the connection does not
// checkpoint the WAL when committing; the caller does that elsewhere.
func (s *Store) begin(ctx context.Context, bulk bool) (*wtx, error) {
	w, err := s.writer()
	if err != nil {
		return nil, err
	}
	conn, err := w.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: begin: %w", err)
	}
	t := &wtx{conn: conn, eng: s.eng}
	if bulk && s.eng == engSQLite {
		var pages int
		if err := conn.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&pages); err != nil {
			return nil, errors.Join(fmt.Errorf("store: begin: %w", err), conn.Close())
		}
		if _, err := conn.ExecContext(ctx, `PRAGMA wal_autocheckpoint = 0`); err != nil {
			return nil, errors.Join(fmt.Errorf("store: begin: %w", err), conn.Close())
		}
		t.ckpt = pages
	}
	if t.Tx, err = conn.BeginTx(ctx, nil); err != nil {
		return nil, errors.Join(fmt.Errorf("store: begin: %w", err), t.release())
	}
	return t, nil
}

// withWtx runs fn in a write transaction (see begin, not bulk) and commits
// it, or rolls it back if fn fails: withTx for code that writes through
// driver statements.
func (s *Store) withWtx(ctx context.Context, fn func(t *wtx) error) error {
	t, err := s.begin(ctx, false)
	if err != nil {
		return err
	}
	if err := fn(t); err != nil {
		return errors.Join(err, t.rollback())
	}
	return t.commit()
}

// exec runs query, prepared once per transaction, with args. It numbers
// args itself (1, 2, ...), which the driver needs to bind them in order.
func (t *wtx) exec(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	for j := range args {
		args[j].Ordinal = j + 1
	}
	var res driver.Result
	err := t.conn.Raw(func(dc any) error {
		st := t.stmts[query]
		if st == nil {
			p, ok := dc.(driver.ConnPrepareContext)
			if !ok {
				return errors.New("the database driver cannot prepare statements")
			}
			var err error
			if st, err = p.PrepareContext(ctx, query); err != nil {
				return err
			}
			if t.stmts == nil {
				t.stmts = map[string]driver.Stmt{}
			}
			t.stmts[query] = st
		}
		ex, ok := st.(driver.StmtExecContext)
		if !ok {
			return errors.New("the database driver cannot execute statements with a context")
		}
		var err error
		res, err = ex.ExecContext(ctx, args)
		return err
	})
	return res, err
}

// rowsPerStmt is how many rows execChunked puts in a statement: up to
// 15 columns, 7,680 values, within SQLite's 32,766 and PostgreSQL's 65,535.
// On SQLite, every page a statement changes that the transaction had
// changed before is copied to the statement journal once per statement,
// so a commit's rollup rows (spread over the secondary indexes) cost a
// page copy per row in statements of 64: a 100k-line import into a new
// database took 6% less time with 512.
const rowsPerStmt = 512

// execChunked runs head + "(?, ...), (?, ...)" + tail over vals, cols
// values per row, up to rowsPerStmt rows per statement (a statement costs
// about as much as a one-row insert in this SQLite).
func (t *wtx) execChunked(ctx context.Context, head, tail string, cols int, vals []driver.NamedValue) error {
	tuple := "(?" + strings.Repeat(", ?", cols-1) + ")"
	var full string
	rows := len(vals) / cols
	for i := 0; i < rows; i += rowsPerStmt {
		k := min(rowsPerStmt, rows-i)
		q := full
		if k < rowsPerStmt {
			q = head + valuesList(tuple, k) + tail
		} else if q == "" {
			full = head + valuesList(tuple, k) + tail
			q = full
		}
		if _, err := t.exec(ctx, q, vals[i*cols:(i+k)*cols]); err != nil {
			return err
		}
	}
	return nil
}

// valuesList returns rows copies of tuple, comma-separated: the VALUES
// list of a multi-row insert.
func valuesList(tuple string, rows int) string {
	return strings.TrimSuffix(strings.Repeat(tuple+", ", rows), ", ")
}

// commit commits the transaction and gives the connection back.
func (t *wtx) commit() error {
	err := t.Commit()
	if err != nil {
		err = fmt.Errorf("store: commit: %w", err)
	}
	return errors.Join(err, t.release())
}

// rollback rolls the transaction back and gives the connection back.
func (t *wtx) rollback() error {
	return errors.Join(rollback(t.Tx), t.release())
}

// release closes the statements, restores automatic checkpoints and gives
// the connection back to the pool.
func (t *wtx) release() error {
	var errs []error
	if len(t.stmts) > 0 {
		errs = append(errs, t.conn.Raw(func(any) error {
			var errs []error
			for _, st := range t.stmts {
				errs = append(errs, st.Close())
			}
			return errors.Join(errs...)
		}))
		t.stmts = nil
	}
	if t.ckpt > 0 {
		if _, err := t.conn.ExecContext(context.Background(), fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", t.ckpt)); err != nil {
			errs = append(errs, fmt.Errorf("store: restore automatic checkpoints: %w", err))
		}
	}
	errs = append(errs, t.conn.Close())
	return errors.Join(errs...)
}
