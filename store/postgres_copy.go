package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// A batch of copyMinRows rows or more goes into deliveries with one COPY
// in PostgreSQL's binary format, under a savepoint: the usual batch (an
// import's, a follower's catch-up) holds no key already stored, and then
// the COPY is the whole cost. When a key is stored already, the COPY fails
// with a unique violation, the savepoint undoes it, and the batch goes the
// slower way that skips stored keys (copyReturning: COPY into a staging
// table, then INSERT ... ON CONFLICT DO NOTHING RETURNING key). Measured
// on 815k deliveries: the direct COPY costs the server about half of the
// staging table's COPY plus INSERT (BENCHMARKS.md, "Fleet on PostgreSQL").

// pgCopyDeliveries is the COPY statement of the direct path; its columns
// are in the order copyEncoder writes them. The columns that detail
// replaced (migration 2) are left to their defaults (migration 11): each
// field a row sends costs the server a receive function call.
const pgCopyDeliveries = `COPY deliveries (time, domain, relay, status, tls, tls_trust, tls_protocol, tls_cipher,
	fallback, tls_failure, key, detail, internal, host_id) FROM STDIN (FORMAT binary)`

// pgUniqueViolation is SQLSTATE unique_violation.
const pgUniqueViolation = "23505"

// pgHorizonShared takes pgHorizonLock shared for t's transaction and
// reads the pruning horizon, in one round trip: two statements in one
// simple query, which takes no parameters, so the lock's key and the
// horizon's name (both constants) are spelt into it.
func pgHorizonShared(ctx context.Context, t *wtx) (int64, error) {
	q := fmt.Sprintf(`SELECT pg_advisory_xact_lock_shared(%d); SELECT value FROM meta WHERE name = '%s'`, int64(pgHorizonLock), horizonName)
	h := int64(horizonNone)
	err := t.withPgx(func(c *pgx.Conn) error {
		rs, err := c.PgConn().Exec(ctx, q).ReadAll()
		if err != nil {
			return err
		}
		if last := rs[len(rs)-1]; len(last.Rows) > 0 {
			h, err = strconv.ParseInt(string(last.Rows[0][0]), 10, 64)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: read pruning horizon: %w", err)
	}
	return h, nil
}

// copyDirect stores every row of b with one COPY, or, when one of its
// keys is stored already, stores the rows not stored yet the slower way.
// The savepoint it returns to for that is set by the query that starts
// the COPY, which also releases the one of the transaction's batch before,
// if any (the savepoint a COPY succeeded under stays until then): a
// statement of its own would cost a round trip a batch, and round trips to
// a server busy on the same cores were a tenth of an import's time.
func copyDirect(ctx context.Context, t *wtx, b *Batch) (skipped []bool, added int, _ error) {
	q := `SAVEPOINT mailtls_copy; ` + pgCopyDeliveries
	if t.copySavepoint {
		q = `RELEASE SAVEPOINT mailtls_copy; ` + q
	}
	data := b.copyData()
	err := t.withPgx(func(c *pgx.Conn) error {
		_, err := c.PgConn().CopyFrom(ctx, bytes.NewReader(data), q)
		return err
	})
	t.copySavepoint = true // set by q before the COPY, if q got that far
	if err == nil {
		return nil, len(b.rows), nil
	}
	if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != pgUniqueViolation {
		return nil, 0, fmt.Errorf("store: copy deliveries: %w", err)
	}
	if _, err := t.ExecContext(ctx, `ROLLBACK TO SAVEPOINT mailtls_copy`); err != nil {
		return nil, 0, fmt.Errorf("store: copy deliveries: %w", err)
	}
	return copyReturning(ctx, t, b)
}

// copyData returns b's rows in the binary COPY format of
// pgCopyDeliveries, for b's host: encoded when b was prepared if the host
// was known then (Bulk.PrepareBatch), on the preparing goroutine, and
// otherwise now.
func (b *Batch) copyData() []byte {
	if b.copied == nil {
		var enc copyEncoder
		enc.batch(b)
		b.copied = enc.buf
	}
	return b.copied
}

// copyEncoder writes rows in the binary COPY format: a header, then per
// row a field count and each field as a length (-1 for NULL) and its
// bytes, big-endian integers, then a trailer. Encoding by hand rather
// than through pgx's typed CopyFrom spares an interface value and a type
// lookup per field: 14 fields a row.
type copyEncoder struct{ buf []byte }

// copyFields is the number of columns of pgCopyDeliveries.
const copyFields = 14

func (e *copyEncoder) batch(b *Batch) {
	e.buf = make([]byte, 0, 21+len(b.rows)*256)
	e.buf = append(e.buf, "PGCOPY\n\xff\r\n\x00"...)
	e.buf = binary.BigEndian.AppendUint32(e.buf, 0) // flags
	e.buf = binary.BigEndian.AppendUint32(e.buf, 0) // header extension length
	for i := range b.rows {
		e.row(&b.rows[i], b.host)
	}
	e.buf = binary.BigEndian.AppendUint16(e.buf, 0xffff)
}

func (e *copyEncoder) row(r *row, host int64) {
	d := r.d
	e.buf = binary.BigEndian.AppendUint16(e.buf, copyFields)
	e.int8(r.us)
	e.text(r.domain)
	e.text(d.Relay)
	e.text(r.status)
	if v, ok := r.tlsNull.(int64); ok {
		e.int8(v)
	} else {
		e.null()
	}
	e.text(r.trust)
	e.text(d.TLSProtocol)
	e.text(d.TLSCipher)
	e.bool8(d.Fallback)
	e.bool8(d.TLSFailure)
	e.bytes(r.key)
	e.text(r.detail)
	e.bool8(d.Internal)
	e.int8(host)
}

func (e *copyEncoder) int8(v int64) {
	e.buf = binary.BigEndian.AppendUint32(e.buf, 8)
	e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(v))
}

func (e *copyEncoder) bool8(v bool) {
	var x int64
	if v {
		x = 1
	}
	e.int8(x)
}

func (e *copyEncoder) text(s string) {
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(s)))
	e.buf = append(e.buf, s...)
}

func (e *copyEncoder) bytes(p []byte) {
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(p)))
	e.buf = append(e.buf, p...)
}

func (e *copyEncoder) null() { e.buf = binary.BigEndian.AppendUint32(e.buf, 0xffffffff) }
