package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strings"
	"time"
)

// Window selects deliveries for a report: Since inclusive, Until exclusive
// (zero = unbounded), Domain as in Filter ("" = all, "example.com",
// "*.example.com" = the domain and its subdomains, ".example.com" =
// subdomains only). Reports leave internal hops (delivery.Delivery.Internal) out
// unless IncludeInternal. Host is "" (the whole fleet) or the name of one
// fleet host (see hosts.go).
type Window struct {
	Since, Until    time.Time
	Domain          string
	Host            string
	IncludeInternal bool
}

// matcher parses the window's Domain and Host.
func (w Window) matcher() (matcher, error) { return windowMatcher(w.Domain, w.Host) }

// span splits a window [lo, hi) in microseconds into whole buckets of one
// rollup granularity, b0 <= bucket < b1, answered from the rollup, and at
// most two partial-bucket edges answered from raw rows through the time
// index. Together they cover the window exactly.
type span struct {
	b0, b1 int64
	edges  [2][2]int64 // unused edges are empty ranges [0, 0)
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }

func splitWindow(lo, hi, unit int64) span {
	var sp span
	if lo >= hi {
		return sp // empty: b0 == b1 == 0, no edges
	}
	b0, b1 := int64(math.MinInt64), int64(math.MaxInt64)
	if lo != math.MinInt64 {
		b0 = ceilDiv(lo, unit)
	}
	if hi != math.MaxInt64 {
		b1 = floorDiv(hi, unit)
	}
	if b0 >= b1 {
		sp.edges[0] = [2]int64{lo, hi}
		return span{b0: 0, b1: 0, edges: sp.edges}
	}
	sp.b0, sp.b1 = b0, b1
	if lo != math.MinInt64 && lo < b0*unit {
		sp.edges[0] = [2]int64{lo, b0 * unit}
	}
	if hi != math.MaxInt64 && b1*unit < hi {
		sp.edges[1] = [2]int64{b1 * unit, hi}
	}
	return sp
}

// edgeSQL is the raw-row condition for the partial buckets of a span.
const edgeSQL = `((time >= ? AND time < ?) OR (time >= ? AND time < ?))`

func (sp span) edgeArgs() []any {
	return []any{sp.edges[0][0], sp.edges[0][1], sp.edges[1][0], sp.edges[1][1]}
}

func (sp span) wholeArgs() []any { return []any{sp.b0, sp.b1} }

// plan is a window resolved against the rollups.
type plan struct {
	lo, hi  int64
	horizon int64 // raw rows before it were pruned (fittedPlan), else horizonNone
	m       matcher
	day     span
	hour    span
	// internal: count internal hops too (Window.IncludeInternal).
	internal bool
}

func newPlan(w Window) (plan, error) {
	m, err := w.matcher()
	if err != nil {
		return plan{}, err
	}
	p := planFor(w.Since, w.Until, m)
	p.internal = w.IncludeInternal
	return p, nil
}

func planFor(since, until time.Time, m matcher) plan {
	lo, hi := bounds(since, until)
	return plan{lo: lo, hi: hi, horizon: horizonNone, m: m, day: splitWindow(lo, hi, usPerDay), hour: splitWindow(lo, hi, usPerHour)}
}

func cat(parts ...[]any) []any {
	var out []any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// rawInternal is the raw-row condition that leaves internal hops out, or
// keeps them (see Window.IncludeInternal).
func (p plan) rawInternal() string {
	if p.internal {
		return "TRUE"
	}
	return "internal = 0"
}

// withInternal returns a rollup query q (with its arguments), which reads
// table (rollup_day or rollup_hour) once, as "FROM table" and a blank, and,
// when the plan counts internal hops, the same query over table's internal
// twin after UNION ALL. q must be usable as one arm of a UNION ALL.
func (p plan) withInternal(q, table string, args []any) (string, []any) {
	if !p.internal {
		return q, args
	}
	from := "FROM " + table
	at := -1
	for i := 0; ; {
		j := strings.Index(q[i:], from)
		if j < 0 {
			break
		}
		if end := i + j + len(from); end < len(q) && (q[end] == ' ' || q[end] == '\n' || q[end] == '\t') {
			if at >= 0 {
				panic("store: withInternal: query reads " + table + " twice")
			}
			at = i + j
		}
		i += j + len(from)
	}
	if at < 0 {
		panic("store: withInternal: query does not read " + table)
	}
	twin := q[:at] + from + "_internal" + q[at+len(from):]
	return q + "\n\tUNION ALL\n\t" + twin, cat(args, args)
}

// relayHostSQL derives relay_host from the raw relay column the way
// splitRelay does.
const relayHostSQL = `lower(CASE WHEN instr(relay, '[') > 0 THEN substr(relay, 1, instr(relay, '[') - 1) ELSE relay END)`

// dimsSource returns a subquery yielding (rdomain, day, status, tls, trust,
// protocol, cipher, fallback, tls_failure, relay_host, n, host_id) for the window:
// rollup_day rows for whole days plus one row per raw delivery on the
// partial edge days. extraRoll/extraRaw are further constant conditions.
func (p plan) dimsSource(extraRoll, extraRaw string, extraRollArgs, extraRawArgs []any) (string, []any) {
	rw, ra := p.m.rollWhere()
	dw, da := p.m.rawWhere()
	rq, rargs := p.withInternal(`SELECT rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, n, host_id
		FROM rollup_day WHERE day >= ? AND day < ? AND `+rw+` AND `+extraRoll, "rollup_day", cat(p.day.wholeArgs(), ra, extraRollArgs))
	q := rq + `
	UNION ALL
	SELECT mailtls_rev(domain), time / ` + fmt.Sprint(usPerDay) + `, status, coalesce(tls, 2), tls_trust, tls_protocol, tls_cipher,
		fallback, tls_failure, ` + relayHostSQL + `, 1, host_id
		FROM deliveries WHERE ` + edgeSQL + ` AND ` + dw + ` AND ` + extraRaw + ` AND ` + p.rawInternal()
	return q, cat(rargs, p.day.edgeArgs(), da, extraRawArgs)
}

// hourSource is like dimsSource over all destinations at hour granularity
// (rollup_hour). Columns: (hour, status, tls, trust, protocol, cipher,
// fallback, tls_failure, n, host_id). Only valid for a plan without a
// domain filter (it may have a host filter).
func (p plan) hourSource() (string, []any) {
	rw, ra := p.m.rollWhere()
	dw, da := p.m.rawWhere()
	rq, rargs := p.withInternal(`SELECT hour, status, tls, trust, protocol, cipher, fallback, tls_failure, n, host_id
		FROM rollup_hour WHERE hour >= ? AND hour < ? AND `+rw, "rollup_hour", cat(p.hour.wholeArgs(), ra))
	q := rq + `
	UNION ALL
	SELECT time / ` + fmt.Sprint(usPerHour) + `, status, coalesce(tls, 2), tls_trust, tls_protocol, tls_cipher, fallback, tls_failure, 1, host_id
		FROM deliveries WHERE ` + edgeSQL + ` AND ` + dw + ` AND ` + p.rawInternal()
	return q, cat(rargs, p.hour.edgeArgs(), da)
}

// read runs fn in a read transaction, so that all its queries see the
// same state of the database even while the follower commits.
func (s *Store) read(ctx context.Context, fn func(tx *sql.Tx) error) error {
	r, err := s.reader()
	if err != nil {
		return err
	}
	tx, err := r.BeginTx(ctx, s.readOpts())
	if err != nil {
		return fmt.Errorf("store: begin read: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	return fn(tx)
}

// readOpts are the options of a read transaction: on PostgreSQL repeatable
// read, so that its queries see one state as in SQLite's WAL.
func (s *Store) readOpts() *sql.TxOptions {
	if s.eng == engPostgres {
		return &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
	}
	return &sql.TxOptions{ReadOnly: true}
}

// queryRows runs q and calls fn for each row.
func queryRows(ctx context.Context, tx *sql.Tx, what, q string, args []any, fn func(*sql.Rows) error) error {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	return nil
}
