package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Summary is the TLS coverage of a window. The JSON names are those of the
// `mailtls report --format json` contract; Coverage is not rounded here.
type Summary struct {
	Deliveries          int64            `json:"deliveries"` // status sent
	Encrypted           int64            `json:"encrypted"`  // sent over TLS
	Plaintext           int64            `json:"plaintext"`  // sent without TLS (known)
	Unknown             int64            `json:"unknown"`    // sent, TLS not known (no TLS logging)
	Fallback            int64            `json:"fallback"`   // plaintext after a failed handshake
	Coverage            float64          `json:"coverage"`   // Encrypted/(Encrypted+Plaintext), 0 if none
	ByTrust             map[string]int64 `json:"by_trust"`   // encrypted sent by trust; "" is reported as "unknown"
	ByProtocol          map[string]int64 `json:"by_protocol"`
	Deferred            int64            `json:"deferred"`     // all deferrals
	TLSDeferred         int64            `json:"tls_deferred"` // deferrals caused by TLS
	Bounced             int64            `json:"bounced"`
	Expired             int64            `json:"expired"`
	PlaintextNoStartTLS int64            `json:"plaintext_no_starttls"` // plaintext sent that was not a fallback
	// Domains is the number of recipient domains with at least one sent
	// delivery in the window. DomainsAllTLS counts those whose sent
	// deliveries were all encrypted (none plaintext, none unknown);
	// DomainsAnyPlaintext those with at least one plaintext sent delivery.
	// A domain with only unknown-TLS or mixed encrypted/unknown deliveries
	// is in neither.
	Domains             int64 `json:"domains"`
	DomainsAllTLS       int64 `json:"domains_all_tls"`
	DomainsAnyPlaintext int64 `json:"domains_any_plaintext"`
	// Internal counts the internal hops in the window (every status):
	// deliveries to content filters and local LMTP (delivery.Delivery.Internal),
	// which the other fields leave out unless Window.IncludeInternal.
	Internal int64 `json:"internal"`
}

func coverage(enc, plain int64) float64 {
	if enc+plain == 0 {
		return 0
	}
	return float64(enc) / float64(enc+plain)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// Summary reports TLS coverage for w. Unfiltered windows read the hourly
// rollup (plus raw rows of the partial first and last hour) for the totals,
// and the daily rollup (plus raw rows of the partial first and last day)
// for the domain counts. Filtered windows read the daily rollup.
func (s *Store) Summary(ctx context.Context, w Window) (Summary, error) {
	m, err := w.matcher()
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{ByTrust: map[string]int64{}, ByProtocol: map[string]int64{}}
	err = s.read(ctx, func(tx *sql.Tx) error {
		p, err := fittedPlan(ctx, tx, w.Since, w.Until, m, w.IncludeInternal)
		if err != nil {
			return err
		}
		if err := totals(ctx, tx, p, &sum); err != nil {
			return err
		}
		if err := internalHops(ctx, tx, p, &sum); err != nil {
			return err
		}
		return domainCounts(ctx, tx, p, &sum)
	})
	if err != nil {
		return Summary{}, err
	}
	sum.Coverage = coverage(sum.Encrypted, sum.Plaintext)
	return sum, nil
}

// totals fills the counters of sum: one pass with conditional sums, and
// one grouped pass over encrypted sent rows only for the trust/protocol
// maps (grouping every row by all dimensions would sort them all).
func totals(ctx context.Context, tx *sql.Tx, p plan, sum *Summary) error {
	var src string
	var args []any
	if p.m.kind == matchAll {
		src, args = p.hourSource()
	} else {
		src, args = p.dimsSource("TRUE", "TRUE", nil, nil)
	}
	q := `SELECT
		coalesce(sum(CASE WHEN status = 'sent' THEN n END), 0),
		coalesce(sum(CASE WHEN status = 'sent' AND tls = 1 THEN n END), 0),
		coalesce(sum(CASE WHEN status = 'sent' AND tls = 0 THEN n END), 0),
		coalesce(sum(CASE WHEN status = 'sent' AND tls = 2 THEN n END), 0),
		coalesce(sum(CASE WHEN status = 'sent' AND fallback = 1 THEN n END), 0),
		coalesce(sum(CASE WHEN status = 'sent' AND tls = 0 AND fallback = 0 THEN n END), 0),
		coalesce(sum(CASE WHEN status = 'deferred' THEN n END), 0),
		coalesce(sum(CASE WHEN status = 'deferred' AND tls_failure = 1 THEN n END), 0),
		coalesce(sum(CASE WHEN status = 'bounced' THEN n END), 0),
		coalesce(sum(CASE WHEN status = 'expired' THEN n END), 0)
		FROM (` + src + `)`
	err := queryRows(ctx, tx, "summary", q, args, func(rows *sql.Rows) error {
		return rows.Scan(&sum.Deliveries, &sum.Encrypted, &sum.Plaintext, &sum.Unknown, &sum.Fallback,
			&sum.PlaintextNoStartTLS, &sum.Deferred, &sum.TLSDeferred, &sum.Bounced, &sum.Expired)
	})
	if err != nil {
		return err
	}
	q = `SELECT trust, protocol, sum(n) FROM (` + src + `) WHERE status = 'sent' AND tls = 1 GROUP BY trust, protocol`
	return queryRows(ctx, tx, "summary", q, args, func(rows *sql.Rows) error {
		var (
			trust, proto string
			n            int64
		)
		if err := rows.Scan(&trust, &proto, &n); err != nil {
			return err
		}
		sum.ByTrust[orUnknown(trust)] += n
		sum.ByProtocol[orUnknown(proto)] += n
		return nil
	})
}

// internalHops fills sum.Internal: the internal hops of the window (every
// status), whether or not the plan counts them in the other fields. It
// reads the internal rollups, which hold only internal hops, and the raw
// rows of the partial edges.
func internalHops(ctx context.Context, tx *sql.Tx, p plan, sum *Summary) error {
	var q string
	var args []any
	if p.m.kind == matchAll {
		rw, ra := p.m.rollWhere() // the host filter, if any
		dw, da := p.m.rawWhere()
		q = `SELECT (SELECT coalesce(sum(n), 0) FROM rollup_hour_internal WHERE hour >= ? AND hour < ? AND ` + rw + `)
			+ (SELECT count(*) FROM deliveries WHERE ` + edgeSQL + ` AND ` + dw + ` AND internal = 1)`
		args = cat(p.hour.wholeArgs(), ra, p.hour.edgeArgs(), da)
	} else {
		rw, ra := p.m.rollWhere()
		dw, da := p.m.rawWhere()
		q = `SELECT (SELECT coalesce(sum(n), 0) FROM rollup_day_internal WHERE day >= ? AND day < ? AND ` + rw + `)
			+ (SELECT count(*) FROM deliveries WHERE ` + edgeSQL + ` AND ` + dw + ` AND internal = 1)`
		args = cat(p.day.wholeArgs(), ra, p.day.edgeArgs(), da)
	}
	return queryRows(ctx, tx, "summary internal hops", q, args, func(rows *sql.Rows) error {
		return rows.Scan(&sum.Internal)
	})
}

// domainCounts fills the Domains* fields. Per domain it needs only two
// flags (any plaintext, any not encrypted); rollup_day_day holds them, and
// walking the primary key yields them in domain order without a sort.
func domainCounts(ctx context.Context, tx *sql.Tx, p plan, sum *Summary) error {
	q, args := domainCountsQuery(p, rollupDayColumn(ctx, tx, p, 4))
	return queryRows(ctx, tx, "summary domains", q, args, func(rows *sql.Rows) error {
		return rows.Scan(&sum.Domains, &sum.DomainsAnyPlaintext, &sum.DomainsAllTLS)
	})
}

// domainCountsQuery is the query of domainCounts, with the day column
// spelt as rollupDayColumn chose.
func domainCountsQuery(p plan, day string) (string, []any) {
	rw, ra := p.m.rollWhere()
	dw, da := p.m.rawWhere()
	rq, rargs := p.withInternal(`SELECT rdomain AS rd, max(CASE WHEN tls = 0 THEN 1 ELSE 0 END) AS p, max(CASE WHEN tls <> 1 THEN 1 ELSE 0 END) AS ne FROM rollup_day
				WHERE status = 'sent' AND `+day+` >= ? AND `+day+` < ? AND `+rw+` GROUP BY rdomain`, "rollup_day", cat(p.day.wholeArgs(), ra))
	q := `SELECT count(*), coalesce(sum(p), 0), coalesce(sum(1 - ne), 0) FROM (
		SELECT rd, max(p) AS p, max(ne) AS ne FROM (
			` + rq + `
			UNION ALL
			SELECT mailtls_rev(domain), max(CASE WHEN tls = 0 THEN 1 ELSE 0 END), max(CASE WHEN tls = 1 THEN 0 ELSE 1 END) FROM deliveries
				WHERE status = 'sent' AND ` + edgeSQL + ` AND ` + dw + ` AND ` + p.rawInternal() + ` GROUP BY domain
		) GROUP BY rd)`
	return q, cat(rargs, p.day.edgeArgs(), da)
}

// rollupDayColumn picks the access path for aggregation over rollup_day by
// domain (or relay host) across all domains, by returning how to spell the
// day column in the window condition. Walking the primary key (domain
// order) reads every stored day but needs no lookups and no sort when
// grouping by domain; a range scan of rollup_day_day reads only the
// window's days but must sort, and look up n in the table. The walk wins
// once the window covers more than 1/share of the stored days (share 4 for
// queries that need only the key columns, about 12 for sums of n, as
// measured with 10 million deliveries); "+day" keeps SQLite from using the
// day index
// (https://sqlite.org/optoverview.html#disqualifying_where_clause_terms_using_unary_).
func rollupDayColumn(ctx context.Context, tx *sql.Tx, p plan, share int64) string {
	if p.m.kind != matchAll {
		return "day" // the matcher's rdomain/relay condition drives the index
	}
	var lo, hi sql.NullInt64
	// Two subqueries: SQLite answers a lone min() or max() from the index
	// ends, but not both in one SELECT.
	if err := tx.QueryRowContext(ctx, `SELECT (SELECT min(day) FROM rollup_day INDEXED BY rollup_day_day),
		(SELECT max(day) FROM rollup_day INDEXED BY rollup_day_day)`).Scan(&lo, &hi); err != nil || !lo.Valid {
		return "day"
	}
	total := hi.Int64 - lo.Int64 + 1
	b0, b1 := max(p.day.b0, lo.Int64), min(p.day.b1, hi.Int64+1)
	if (b1-b0)*share >= total {
		return "+day"
	}
	return "day"
}

// Row is one line of a grouped report.
type Row struct {
	Key        string  `json:"key"`
	Deliveries int64   `json:"deliveries"`
	Encrypted  int64   `json:"encrypted"`
	Plaintext  int64   `json:"plaintext"`
	Coverage   float64 `json:"coverage"`
}

// ReportDimensions lists the values ReportBy accepts for by.
var ReportDimensions = []string{"domain", "day", "hour", "relay", "protocol", "cipher", "trust", "status", "policy", "host"}

// ReportBy groups the window by one dimension:
//
//   - domain, relay (relay host, ports summed), protocol, cipher, trust,
//     host (the fleet host that stored them, see hosts.go): rows count sent
//     deliveries; rows are ordered by Deliveries descending
//     and rows with no sent delivery are left out. An empty protocol,
//     cipher or trust (plaintext or unknown) is reported as "none".
//   - status: one row per status; Deliveries counts deliveries with that
//     status, Encrypted/Plaintext those with known TLS state.
//   - day ("2006-01-02", UTC) and hour ("2006-01-02T15:00:00Z"): ordered by
//     time ascending; top keeps the most recent buckets.
//
// top > 0 limits the number of rows. Costs: day, hour, protocol, cipher,
// trust, status and host read the hourly rollup without a domain filter
// and the daily rollup with one; domain and relay aggregate every daily rollup row in
// the window (one row per domain, day and TLS outcome); hour with a domain
// filter reads the raw rows of the days on which the domain had mail (for a
// domain with mail every day, every row in the window); policy (the source
// of the answer in force for each sent delivery: override, dane, mta-sts,
// default; see policyRows) reads the raw rows of the window from the
// pruning horizon on.
func (s *Store) ReportBy(ctx context.Context, w Window, by string, top int) ([]Row, error) {
	m, err := w.matcher()
	if err != nil {
		return nil, err
	}
	if !slices.Contains(ReportDimensions, by) {
		return nil, errDimension(by)
	}
	var out []Row
	err = s.read(ctx, func(tx *sql.Tx) error {
		p, err := fittedPlan(ctx, tx, w.Since, w.Until, m, w.IncludeInternal)
		if err != nil {
			return err
		}
		q, args, err := reportQuery(p, by)
		if err != nil {
			return err
		}
		switch {
		case by == "policy":
			out, err = policyRows(ctx, tx, p)
			return err
		case by == "domain" || by == "relay":
			q, args = keyedSent(ctx, tx, p, by)
		case by == "hour" && p.m.kind != matchAll:
			out, err = hoursFiltered(ctx, tx, p)
			return err
		}
		out, err = reportRows(ctx, tx, by, q, args)
		return err
	})
	if err != nil {
		return nil, err
	}
	return finishRows(out, by, top), nil
}

func errDimension(by string) error {
	return fmt.Errorf("%w: report dimension %q; accepted: %s", ErrBadInput, by, strings.Join(ReportDimensions, ", "))
}

// reportQuery returns the query of ReportBy for p and by, except for
// domain and relay (set inside the read transaction by keyedSent) and hour
// with a domain filter (hoursFiltered).
func reportQuery(p plan, by string) (q string, args []any, err error) {
	agg := func(src string, sentOnly bool) string {
		cond := "status = 'sent'"
		if !sentOnly {
			cond = "TRUE"
		}
		return `SELECT k, sum(n), sum(CASE WHEN tls = 1 THEN n ELSE 0 END), sum(CASE WHEN tls = 0 THEN n ELSE 0 END)
			FROM (` + src + `) WHERE ` + cond + ` GROUP BY k`
	}
	unfiltered := p.m.kind == matchAll
	switch by {
	case "protocol", "cipher", "trust", "status":
		col := map[string]string{"protocol": "protocol", "cipher": "cipher", "trust": "trust", "status": "status"}[by]
		var src string
		if unfiltered {
			src, args = p.hourSource()
		} else {
			src, args = p.dimsSource("TRUE", "TRUE", nil, nil)
		}
		q = agg(`SELECT `+col+` AS k, status, tls, n FROM (`+src+`)`, by != "status")
	case "host":
		var src string
		if unfiltered {
			src, args = p.hourSource()
		} else {
			src, args = p.dimsSource("status = 'sent'", "status = 'sent'", nil, nil)
		}
		q = `SELECT coalesce(h.name, ''), g.s, g.e, g.pl FROM (
			SELECT host_id AS k, sum(n) AS s, sum(CASE WHEN tls = 1 THEN n ELSE 0 END) AS e, sum(CASE WHEN tls = 0 THEN n ELSE 0 END) AS pl
			FROM (` + src + `) AS src WHERE status = 'sent' GROUP BY host_id) AS g
			LEFT JOIN hosts AS h ON h.id = g.k`
	case "domain", "relay", "policy":
		// set by keyedSent (policy: policyRows, answerlog.go), which chooses the access path
	case "day":
		if unfiltered {
			src, a := p.hourSource()
			q, args = agg(`SELECT hour / 24 AS k, status, tls, n FROM (`+src+`)`, true), a
		} else {
			src, a := p.dimsSource("status = 'sent'", "status = 'sent'", nil, nil)
			q, args = agg(`SELECT day AS k, status, tls, n FROM (`+src+`)`, true), a
		}
	case "hour":
		if unfiltered {
			src, a := p.hourSource()
			q, args = agg(`SELECT hour AS k, status, tls, n FROM (`+src+`)`, true), a
		}
	default:
		return "", nil, errDimension(by)
	}
	return q, args, nil
}

// hoursFiltered is ReportBy(hour) with a domain filter: raw rows of the
// days on which the filter has deliveries. Hours before the pruning
// horizon are not kept for single domains, so the rows start there.
func hoursFiltered(ctx context.Context, tx *sql.Tx, p plan) ([]Row, error) {
	ranges, err := dayRanges(ctx, tx, p.m, max(p.lo, p.horizon), p.hi, p.internal)
	if err != nil {
		return nil, err
	}
	dw, da := p.m.rawWhere()
	q := `SELECT time / ` + fmt.Sprint(usPerHour) + ` AS k, count(*), count(CASE WHEN tls = 1 THEN 1 END), count(CASE WHEN tls = 0 THEN 1 END)
		FROM deliveries WHERE status = 'sent' AND time >= ? AND time < ? AND ` + dw + ` AND ` + p.rawInternal() + ` GROUP BY k`
	var out []Row
	for _, rg := range ranges {
		rs, err := reportRows(ctx, tx, "hour", q, cat([]any{rg[0], rg[1]}, da))
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

// rows runs a grouped report query returning (key, deliveries, encrypted,
// plaintext) and formats the keys for dimension by.
func reportRows(ctx context.Context, tx *sql.Tx, by, q string, args []any) ([]Row, error) {
	var out []Row
	err := queryRows(ctx, tx, "report by "+by, q, args, func(rows *sql.Rows) error {
		var (
			k any
			r Row
		)
		if err := rows.Scan(&k, &r.Deliveries, &r.Encrypted, &r.Plaintext); err != nil {
			return err
		}
		switch v := k.(type) {
		case int64:
			if by == "day" {
				r.Key = time.Unix(v*86400, 0).UTC().Format(time.DateOnly)
			} else {
				r.Key = time.Unix(v*3600, 0).UTC().Format(time.RFC3339)
			}
		case string:
			r.Key = v
		case []byte:
			r.Key = string(v)
		}
		if by == "domain" {
			r.Key = reverse(r.Key)
		}
		if by == "host" && r.Key == "" {
			r.Key = UnclaimedHost
		}
		if r.Key == "" {
			r.Key = "none"
		}
		r.Coverage = coverage(r.Encrypted, r.Plaintext)
		out = append(out, r)
		return nil
	})
	return out, err
}

// finishRows orders and trims report rows.
func finishRows(out []Row, by string, top int) []Row {
	if by == "day" || by == "hour" {
		sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
		if top > 0 && len(out) > top {
			out = out[len(out)-top:]
		}
		return out
	}
	kept := out[:0]
	for _, r := range out {
		if by == "status" || r.Deliveries > 0 {
			kept = append(kept, r)
		}
	}
	out = kept
	sort.Slice(out, func(i, j int) bool {
		if out[i].Deliveries != out[j].Deliveries {
			return out[i].Deliveries > out[j].Deliveries
		}
		return out[i].Key < out[j].Key
	})
	if top > 0 && len(out) > top {
		out = out[:top]
	}
	return out
}

// keyedSent aggregates sent deliveries by domain or relay host. Each part
// (rollup, raw edges) is grouped on its own first so that the rollup part
// can stream along the primary key in domain order; only the per-key
// partial sums are merged.
func keyedSent(ctx context.Context, tx *sql.Tx, p plan, by string) (string, []any) {
	return keyedSentQuery(p, by, rollupDayColumn(ctx, tx, p, 12))
}

// keyedSentQuery is the query of keyedSent, with the day column spelt as
// rollupDayColumn chose.
func keyedSentQuery(p plan, by, day string) (string, []any) {
	rollKey, rawKey := "rdomain", "mailtls_rev(domain)"
	if by == "relay" {
		rollKey, rawKey = "relay_host", relayHostSQL
	}
	rw, ra := p.m.rollWhere()
	dw, da := p.m.rawWhere()
	rq, rargs := p.withInternal(`SELECT `+rollKey+` AS k, sum(n) AS s, sum(CASE WHEN tls = 1 THEN n ELSE 0 END) AS e, sum(CASE WHEN tls = 0 THEN n ELSE 0 END) AS pl
			FROM rollup_day WHERE status = 'sent' AND `+day+` >= ? AND `+day+` < ? AND `+rw+` GROUP BY `+rollKey, "rollup_day", cat(p.day.wholeArgs(), ra))
	q := `SELECT k, sum(s), sum(e), sum(pl) FROM (
		` + rq + `
		UNION ALL
		SELECT ` + rawKey + `, count(*), count(CASE WHEN tls = 1 THEN 1 END), count(CASE WHEN tls = 0 THEN 1 END)
			FROM deliveries WHERE status = 'sent' AND ` + edgeSQL + ` AND ` + dw + ` AND ` + p.rawInternal() + ` GROUP BY 1
	) GROUP BY k`
	return q, cat(rargs, p.day.edgeArgs(), da)
}
