package store

import (
	"context"
	"database/sql/driver"
	"fmt"
	"math/bits"
	"strings"

	"github.com/jackc/pgx/v5"
)

// pgInsertStmts[k] inserts 1<<k rows on PostgreSQL and returns the keys of
// those it inserted: ON CONFLICT DO NOTHING skips keys already stored (and
// a key repeated in the statement after its first row), and RETURNING
// tells which rows went in, where SQLite's insertBatch reads rowids.
var pgInsertStmts = func() []string {
	head := strings.Replace(insertHead, "INSERT OR IGNORE INTO", "INSERT INTO", 1)
	var out []string
	for n := 1; n <= insertChunk; n *= 2 {
		out = append(out, head+valuesList(insertTuple, n)+` ON CONFLICT DO NOTHING RETURNING key`)
	}
	return out
}()

// insertReturning is insertBatch's loop on PostgreSQL: it returns which
// rows of b it skipped (nil when none) and how many it inserted.
func insertReturning(ctx context.Context, t *wtx, b *Batch) (skipped []bool, added int, _ error) {
	rows := b.rows
	if len(rows) >= copyMinRows {
		return copyDirect(ctx, t, b)
	}
	args := make([]any, 0, insertChunk*insertCols)
	var vals []driver.NamedValue
	for i := 0; i < len(rows); {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		k := bits.Len(uint(min(insertChunk, len(rows)-i))) - 1
		n := 1 << k
		chunk := rows[i : i+n]
		args, vals = args[:0], b.appendArgs(vals[:0], i, i+n)
		for _, v := range vals {
			args = append(args, v.Value)
		}
		inserted, err := returnedKeys(ctx, t, pgInsertStmts[k], args)
		if err != nil {
			return nil, 0, fmt.Errorf("store: insert deliveries (queue id %s...): %w", chunk[0].d.QueueID, err)
		}
		if len(inserted) < n {
			if skipped == nil {
				skipped = make([]bool, len(rows))
			}
			for j := range chunk {
				if key := string(chunk[j].key); inserted[key] {
					delete(inserted, key) // a repeat later in the chunk was skipped
				} else {
					skipped[i+j] = true
				}
			}
		}
		added += countKept(skipped, i, n)
		i += n
	}
	return skipped, added, nil
}

// countKept counts the rows of [i, i+n) not marked in skipped.
func countKept(skipped []bool, i, n int) int {
	if skipped == nil {
		return n
	}
	c := 0
	for _, s := range skipped[i : i+n] {
		if !s {
			c++
		}
	}
	return c
}

// returnedKeys runs an insert ... RETURNING key and collects the keys.
func returnedKeys(ctx context.Context, t *wtx, q string, args []any) (map[string]bool, error) {
	rs, err := t.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	out := map[string]bool{}
	for rs.Next() {
		var k []byte
		if err := rs.Scan(&k); err != nil {
			return nil, err
		}
		out[string(k)] = true
	}
	return out, rs.Err()
}

// copyMinRows is the size from which a batch goes in with COPY rather than
// multi-row INSERTs (a bulk import's batches, a follower's catch-up).
// Tests lower it to run small batches through COPY.
var copyMinRows = 1024

// pgStaging is the session's staging table of COPY: rows go in with COPY,
// then into deliveries with one INSERT ... SELECT, whose ON CONFLICT DO
// NOTHING skips the keys already stored and RETURNING tells which went in.
// (Spelt as SQLite's, like all SQL here; see pgSQL.)
const pgStaging = `CREATE TEMP TABLE IF NOT EXISTS mailtls_staging (
	seq INTEGER, time INTEGER, domain TEXT, relay TEXT, status TEXT, tls INTEGER, tls_trust TEXT, tls_protocol TEXT,
	tls_cipher TEXT, fallback INTEGER, tls_failure INTEGER, key BLOB, detail TEXT, internal INTEGER, host_id INTEGER)
	ON COMMIT DELETE ROWS`

var pgStagingCols = []string{"seq", "time", "domain", "relay", "status", "tls", "tls_trust", "tls_protocol", "tls_cipher",
	"fallback", "tls_failure", "key", "detail", "internal", "host_id"}

const pgFromStaging = `INSERT INTO deliveries(time, domain, relay, status, tls, tls_trust, tls_protocol, tls_cipher,
	fallback, tls_failure, key, detail, internal, host_id, queue_id, recipient, orig_to, dsn, reason, process, pid, host)
	SELECT time, domain, relay, status, tls, tls_trust, tls_protocol, tls_cipher, fallback, tls_failure, key, detail, internal,
		host_id, '', '', '', '', '', '', 0, '' FROM mailtls_staging ORDER BY seq
	ON CONFLICT DO NOTHING RETURNING key`

// copyReturning stores b through the staging table (pgStaging).
func copyReturning(ctx context.Context, t *wtx, b *Batch) (skipped []bool, added int, _ error) {
	if _, err := t.ExecContext(ctx, pgStaging); err != nil {
		return nil, 0, fmt.Errorf("store: staging table: %w", err)
	}
	if _, err := t.ExecContext(ctx, `TRUNCATE mailtls_staging`); err != nil {
		return nil, 0, fmt.Errorf("store: staging table: %w", err)
	}
	src := &stagingRows{b: b, i: -1, row: make([]any, insertCols+1)}
	err := t.withPgx(func(c *pgx.Conn) error {
		_, err := c.CopyFrom(ctx, pgx.Identifier{"mailtls_staging"}, pgStagingCols, src)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("store: copy deliveries: %w", err)
	}
	inserted, err := returnedKeys(ctx, t, pgFromStaging, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("store: insert deliveries: %w", err)
	}
	if len(inserted) == len(b.rows) {
		return nil, len(inserted), nil
	}
	skipped = make([]bool, len(b.rows))
	for j := range b.rows {
		if key := string(b.rows[j].key); inserted[key] {
			delete(inserted, key)
			added++
		} else {
			skipped[j] = true
		}
	}
	return skipped, added, nil
}

// stagingRows is b as a pgx.CopyFromSource: each row's insert arguments
// after its sequence number, booleans as integers.
type stagingRows struct {
	b    *Batch
	i    int
	row  []any
	vals []driver.NamedValue
}

func (r *stagingRows) Next() bool {
	r.i++
	return r.i < len(r.b.rows)
}

func (r *stagingRows) Values() ([]any, error) {
	r.row[0] = int64(r.i)
	r.vals = r.b.appendArgs(r.vals[:0], r.i, r.i+1)
	copyRow(r.row[1:], r.vals)
	return r.row, nil
}

func (r *stagingRows) Err() error { return nil }

// copyRow sets dst to the values of vals, booleans as integers (boolInt),
// for pgx's CopyFrom, which does not go through pgConn's conversion.
func copyRow(dst []any, vals []driver.NamedValue) {
	for j, v := range vals {
		if x, ok := v.Value.(bool); ok {
			dst[j] = boolInt(x)
		} else {
			dst[j] = v.Value
		}
	}
}

// upsert inserts vals (the values of cols, a comma-separated list, row
// after row) into table, with tail (ON CONFLICT ...) deciding what a row
// whose key is stored already does. On SQLite: execChunked. On PostgreSQL,
// where each statement is a round trip to a server that may be busy on
// the same cores, the rows go with one COPY into a temporary table of
// those columns, then into table with one INSERT ... SELECT: three round
// trips for a commit's rollup rows, not one per 64 (the rollups
// of a 5-second import transaction were about 400 statements and a tenth
// of the import's time). vals must hold no key twice (ON CONFLICT DO
// UPDATE cannot update a row twice in one statement), as a rollup's rows
// do not.
// upsertCopyMin is the fewest rows upsert sends through COPY on
// PostgreSQL; fewer go in one statement.
const upsertCopyMin = 64

func (t *wtx) upsert(ctx context.Context, table, cols, tail string, vals []driver.NamedValue) error {
	names := strings.Split(cols, ", ")
	if t.eng != engPostgres || len(vals) < upsertCopyMin*len(names) {
		return t.execChunked(ctx, `INSERT INTO `+table+`(`+cols+`) VALUES `, tail, len(names), vals)
	}
	tmp := "mailtls_up_" + table
	if _, err := t.ExecContext(ctx, `CREATE TEMP TABLE IF NOT EXISTS `+tmp+` ON COMMIT DELETE ROWS AS SELECT `+cols+` FROM `+table+` WITH NO DATA`); err != nil {
		return err
	}
	if _, err := t.ExecContext(ctx, `TRUNCATE `+tmp); err != nil {
		return err
	}
	src := &valueRows{vals: vals, cols: len(names), i: -1, row: make([]any, len(names))}
	err := t.withPgx(func(c *pgx.Conn) error {
		_, err := c.CopyFrom(ctx, pgx.Identifier{tmp}, names, src)
		return err
	})
	if err != nil {
		return err
	}
	_, err = t.ExecContext(ctx, `INSERT INTO `+table+`(`+cols+`) SELECT `+cols+` FROM `+tmp+tail)
	return err
}

// valueRows is vals as a pgx.CopyFromSource, cols values a row, booleans as
// integers (the columns are).
type valueRows struct {
	vals []driver.NamedValue
	cols int
	i    int
	row  []any
}

func (v *valueRows) Next() bool { v.i++; return (v.i+1)*v.cols <= len(v.vals) }

func (v *valueRows) Values() ([]any, error) {
	copyRow(v.row, v.vals[v.i*v.cols:(v.i+1)*v.cols])
	return v.row, nil
}

func (v *valueRows) Err() error { return nil }
