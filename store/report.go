package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
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
	p, err := newPlan(w)
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{ByTrust: map[string]int64{}, ByProtocol: map[string]int64{}}

	var src string
	var args []any
	if p.m.kind == matchAll {
		src, args = p.hourSource()
	} else {
		src, args = p.dimsSource("1", "1", nil, nil)
	}
	q := `SELECT status, tls, trust, protocol, fallback, tls_failure, sum(n) FROM (` + src + `)
		GROUP BY status, tls, trust, protocol, fallback, tls_failure`
	err = s.query(ctx, "summary", q, args, func(rows *sql.Rows) error {
		var (
			status, trust, proto string
			tls                  int
			fallback, tlsFail    bool
			n                    int64
		)
		if err := rows.Scan(&status, &tls, &trust, &proto, &fallback, &tlsFail, &n); err != nil {
			return err
		}
		switch status {
		case StatusSent:
			sum.Deliveries += n
			switch tls {
			case tlsEnc:
				sum.Encrypted += n
				sum.ByTrust[orUnknown(trust)] += n
				sum.ByProtocol[orUnknown(proto)] += n
			case tlsPlain:
				sum.Plaintext += n
				if !fallback {
					sum.PlaintextNoStartTLS += n
				}
			default:
				sum.Unknown += n
			}
			if fallback {
				sum.Fallback += n
			}
		case StatusDeferred:
			sum.Deferred += n
			if tlsFail {
				sum.TLSDeferred += n
			}
		case StatusBounced:
			sum.Bounced += n
		case StatusExpired:
			sum.Expired += n
		}
		return nil
	})
	if err != nil {
		return Summary{}, err
	}
	sum.Coverage = coverage(sum.Encrypted, sum.Plaintext)
	if err := s.domainCounts(ctx, p, &sum); err != nil {
		return Summary{}, err
	}
	return sum, nil
}

// domainCounts fills the Domains* fields. Per domain it needs only two
// flags (any plaintext, any not-encrypted), which the rollup_day_domain
// index answers without touching the table; walking that index in domain
// order also avoids sorting when the window covers most of the data.
func (s *Store) domainCounts(ctx context.Context, p plan, sum *Summary) error {
	rw, ra := p.m.rollWhere()
	dw, da := p.m.rawWhere()
	idx := s.rollupIndexHint(ctx, p, "rollup_day_domain")
	q := `SELECT count(*), coalesce(sum(p), 0), coalesce(sum(1 - ne), 0) FROM (
		SELECT rd, max(p) AS p, max(ne) AS ne FROM (
			SELECT rdomain AS rd, max(tls = 0) AS p, max(tls <> 1) AS ne FROM rollup_day ` + idx + `
				WHERE status = 'sent' AND day >= ? AND day < ? AND ` + rw + ` GROUP BY rdomain
			UNION ALL
			SELECT mailtls_rev(domain), max(tls IS 0), max(tls IS NOT 1) FROM deliveries
				WHERE status = 'sent' AND ` + edgeSQL + ` AND ` + dw + ` GROUP BY domain
		) GROUP BY rd)`
	args := cat(p.day.wholeArgs(), ra, p.day.edgeArgs(), da)
	return s.query(ctx, "summary domains", q, args, func(rows *sql.Rows) error {
		return rows.Scan(&sum.Domains, &sum.DomainsAnyPlaintext, &sum.DomainsAllTLS)
	})
}

// rollupIndexHint picks the access path for per-domain (or per-relay)
// aggregation over rollup_day. Walking index (rollup_day_domain or
// rollup_day_relay) reads every day but needs no sort; a day-range scan of
// the primary key reads only the window but must sort by key. The walk wins
// once the window holds a good part of the data.
func (s *Store) rollupIndexHint(ctx context.Context, p plan, index string) string {
	if p.m.kind != matchAll {
		return "" // the matcher's rdomain condition drives the index
	}
	var lo, hi sql.NullInt64
	r, err := s.reader()
	if err != nil {
		return ""
	}
	if err := r.QueryRowContext(ctx, `SELECT min(day), max(day) FROM rollup_day`).Scan(&lo, &hi); err != nil || !lo.Valid {
		return ""
	}
	total := hi.Int64 - lo.Int64 + 1
	b0, b1 := max(p.day.b0, lo.Int64), min(p.day.b1, hi.Int64+1)
	if b1-b0 >= total/4 {
		return "INDEXED BY " + index
	}
	return ""
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
var ReportDimensions = []string{"domain", "day", "hour", "relay", "protocol", "cipher", "trust", "status"}

// ReportBy groups the window by one dimension:
//
//   - domain, relay (relay host, ports summed), protocol, cipher, trust:
//     rows count sent deliveries; rows are ordered by Deliveries descending
//     and rows with no sent delivery are left out. An empty protocol,
//     cipher or trust (plaintext or unknown) is reported as "none".
//   - status: one row per status; Deliveries counts deliveries with that
//     status, Encrypted/Plaintext those with known TLS state.
//   - day ("2006-01-02", UTC) and hour ("2006-01-02T15:00:00Z"): ordered by
//     time ascending; top keeps the most recent buckets.
//
// top > 0 limits the number of rows. Costs: day, hour, protocol, cipher,
// trust and status read the hourly rollup when unfiltered and the daily
// rollup when filtered; domain and relay aggregate every daily rollup row in
// the window (one row per domain, day and TLS outcome); hour with a domain
// filter reads raw rows through the (domain, time) index, or the whole
// window through the time index for wildcard filters.
func (s *Store) ReportBy(ctx context.Context, w Window, by string, top int) ([]Row, error) {
	p, err := newPlan(w)
	if err != nil {
		return nil, err
	}
	var (
		q    string
		args []any
	)
	agg := func(src string, sentOnly bool) string {
		cond := "status = 'sent'"
		if !sentOnly {
			cond = "1"
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
			src, args = p.dimsSource("1", "1", nil, nil)
		}
		q = agg(`SELECT `+col+` AS k, status, tls, n FROM (`+src+`)`, by != "status")
	case "domain", "relay":
		q, args = s.keyedSent(ctx, p, by)
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
		} else {
			dw, da := p.m.rawWhere()
			q = agg(`SELECT time / `+fmt.Sprint(usPerHour)+` AS k, status, coalesce(tls, 2) AS tls, 1 AS n
				FROM deliveries WHERE time >= ? AND time < ? AND `+dw, true)
			args = cat([]any{p.lo, p.hi}, da)
		}
	default:
		return nil, fmt.Errorf("%w: report dimension %q; accepted: domain, day, hour, relay, protocol, cipher, trust, status", ErrBadInput, by)
	}
	var out []Row
	err = s.query(ctx, "report by "+by, q, args, func(rows *sql.Rows) error {
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
		if r.Key == "" {
			r.Key = "none"
		}
		r.Coverage = coverage(r.Encrypted, r.Plaintext)
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if by == "day" || by == "hour" {
		sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
		if top > 0 && len(out) > top {
			out = out[len(out)-top:]
		}
		return out, nil
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
	return out, nil
}

// keyedSent aggregates sent deliveries by domain or relay host. Each part
// (rollup, raw edges) is grouped on its own first so the rollup part can
// stream along an index in key order; only the per-key partial sums are
// sorted.
func (s *Store) keyedSent(ctx context.Context, p plan, by string) (string, []any) {
	rollKey, rawKey, hint := "rdomain", "mailtls_rev(domain)", s.rollupIndexHint(ctx, p, "rollup_day_domain")
	if by == "relay" {
		rollKey, rawKey, hint = "relay_host", relayHostSQL, s.rollupIndexHint(ctx, p, "rollup_day_relay")
	}
	rw, ra := p.m.rollWhere()
	dw, da := p.m.rawWhere()
	q := `SELECT k, sum(s), sum(e), sum(pl) FROM (
		SELECT ` + rollKey + ` AS k, sum(n) AS s, sum(CASE WHEN tls = 1 THEN n ELSE 0 END) AS e, sum(CASE WHEN tls = 0 THEN n ELSE 0 END) AS pl
			FROM rollup_day ` + hint + ` WHERE status = 'sent' AND day >= ? AND day < ? AND ` + rw + ` GROUP BY ` + rollKey + `
		UNION ALL
		SELECT ` + rawKey + `, count(*), count(CASE WHEN tls = 1 THEN 1 END), count(CASE WHEN tls = 0 THEN 1 END)
			FROM deliveries WHERE status = 'sent' AND ` + edgeSQL + ` AND ` + dw + ` GROUP BY 1
	) GROUP BY k`
	return q, cat(p.day.wholeArgs(), ra, p.day.edgeArgs(), da)
}
