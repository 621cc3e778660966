package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/mailtls/mailtls/policyd"
)

// Downgrade is a destination that had encrypted deliveries and later, in
// the window, plaintext deliveries or TLS failures: the pattern of a broken
// server certificate or of STARTTLS being stripped on the path.
type Downgrade struct {
	Domain string
	// FirstSeen and LastSeen bound the bad deliveries counted: those in the
	// window that came after the domain's first encrypted delivery.
	FirstSeen, LastSeen time.Time
	Count               int64 // Plaintext + TLSFailures (a delivery is counted once)
	Plaintext           int64 // plaintext sent deliveries
	TLSFailures         int64 // deliveries deferred/bounced because of TLS
	// The last encrypted delivery before FirstSeen: how TLS looked
	// before the downgrade.
	LastTLSAt       time.Time
	LastTLSTrust    string
	LastTLSProtocol string
	LastTLSCipher   string
}

// badSQL must stay textually equal to the WHERE clause of the
// deliveries_bad partial index so SQLite can use that index.
const badSQL = `((status = 'sent' AND tls = 0) OR tls_failure = 1)`

// Downgrades lists destinations (recipient domains) with plaintext sent
// deliveries or TLS failures in w that had an encrypted sent delivery
// before them, earlier in the window or at any time before. A domain that
// was always plaintext is not listed. Results are ordered by LastSeen,
// newest first.
//
// Cost: one pass over the bad deliveries of the window (a partial index,
// see rekeyBadIndex), a rollup probe per domain in it, and for each
// downgraded one a probe for its last encrypted delivery (when it also had
// TLS earlier on the day of its first bad delivery, a backward scan of that
// day's time index). On the 10-million-row bench database (filldb, index
// keyed (domain, time) as upgraded databases keep it) 90 days took about
// 11.5 s with a warm page cache; on a new database the index is keyed by
// time and holds the columns read.
func (s *Store) Downgrades(ctx context.Context, w Window) ([]Downgrade, error) {
	p, err := newPlan(w)
	if err != nil {
		return nil, err
	}
	var out []Downgrade
	err = s.read(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = downgrades(ctx, tx, p, s.eng == engPostgres)
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LastSeen.Equal(out[j].LastSeen) {
			return out[i].LastSeen.After(out[j].LastSeen)
		}
		return out[i].Domain < out[j].Domain
	})
	return out, nil
}

// downgrades answers Downgrades. With prefetch it looks up each domain's
// first encrypted delivery before the pass over the bad deliveries, not
// during it: a PostgreSQL connection runs one query at a time.
func downgrades(ctx context.Context, tx *sql.Tx, p plan, prefetch bool) ([]Downgrade, error) {
	qs := []string{
		// The domain's first encrypted delivery ever.
		`SELECT min(first_time) FROM rollup_day INDEXED BY rollup_day_first_enc WHERE rdomain = ?1 AND status = 'sent' AND tls = 1`,
		// The last encrypted delivery before FirstSeen, from rollup rows
		// that end before it,
		`SELECT last_time, trust, protocol, cipher FROM rollup_day
			WHERE rdomain = ?1 AND day <= ?2 AND status = 'sent' AND tls = 1 AND last_time < ?3 ORDER BY last_time DESC LIMIT 1`,
		// unless rollup rows of that day straddle FirstSeen: each has an
		// encrypted delivery at its first_time, before FirstSeen,
		`SELECT max(first_time) FROM rollup_day WHERE rdomain = ?1 AND day = ?2 AND status = 'sent' AND tls = 1 AND first_time < ?3 AND last_time >= ?4`,
		// so the answer lies in the raw rows between the latest of those
		// and FirstSeen.
		`SELECT time, tls_trust, tls_protocol, tls_cipher FROM deliveries
			WHERE time >= ? AND time < ? AND domain = ? AND status = 'sent' AND tls = 1 AND ` + p.rawInternal() + ` ORDER BY time DESC LIMIT 1`,
	}
	if p.internal {
		// The same over both rollups (numbered parameters: each is bound once).
		qs[0] = `SELECT min(t) FROM (` + qs[0] + ` UNION ALL
			SELECT min(first_time) FROM rollup_day_internal WHERE rdomain = ?1 AND status = 'sent' AND tls = 1)`
		qs[1] = `SELECT * FROM (SELECT last_time, trust, protocol, cipher FROM rollup_day
			WHERE rdomain = ?1 AND day <= ?2 AND status = 'sent' AND tls = 1 AND last_time < ?3
			UNION ALL SELECT last_time, trust, protocol, cipher FROM rollup_day_internal
			WHERE rdomain = ?1 AND day <= ?2 AND status = 'sent' AND tls = 1 AND last_time < ?3) ORDER BY last_time DESC LIMIT 1`
		qs[2] = `SELECT max(t) FROM (` + qs[2] + ` UNION ALL
			SELECT max(first_time) FROM rollup_day_internal WHERE rdomain = ?1 AND day = ?2 AND status = 'sent' AND tls = 1 AND first_time < ?3 AND last_time >= ?4)`
		qs[0] = strings.Replace(qs[0], "SELECT min(first_time) FROM rollup_day INDEXED", "SELECT min(first_time) AS t FROM rollup_day INDEXED", 1)
		qs[2] = strings.Replace(qs[2], "SELECT max(first_time) FROM rollup_day WHERE", "SELECT max(first_time) AS t FROM rollup_day WHERE", 1)
	}
	var stmts [4]*sql.Stmt
	for i, q := range qs {
		var err error
		if stmts[i], err = tx.PrepareContext(ctx, q); err != nil {
			return nil, fmt.Errorf("store: downgrades: %w", err)
		}
		defer stmts[i].Close()
	}
	firstEnc, lastRoll, straddle, lastRaw := stmts[0], stmts[1], stmts[2], stmts[3]

	// One pass over the bad deliveries of the window counts, per domain,
	// those after its first encrypted delivery, looked up the first time
	// the domain comes up. (Probing the index per domain would need it
	// keyed by domain, which costs imports: see rekeyBadIndex.)
	type span struct{ n, plain, fail, min, max int64 }
	firsts := map[string]sql.NullInt64{} // invalid: never encrypted, not a downgrade
	spans := map[string]*span{}
	dw, da := p.m.rawWhere()
	where := badSQL + ` AND time >= ? AND time < ? AND ` + dw + ` AND ` + p.rawInternal()
	if prefetch {
		var doms []string
		if err := queryRows(ctx, tx, "downgrades", `SELECT DISTINCT domain FROM deliveries WHERE `+where, cat([]any{p.lo, p.hi}, da),
			func(rows *sql.Rows) error {
				var d string
				err := rows.Scan(&d)
				doms = append(doms, d)
				return err
			}); err != nil {
			return nil, err
		}
		for _, d := range doms {
			var first sql.NullInt64
			if err := firstEnc.QueryRowContext(ctx, reverse(d)).Scan(&first); err != nil {
				return nil, fmt.Errorf("store: downgrades: %s: %w", d, err)
			}
			firsts[d] = first
		}
	}
	err := queryRows(ctx, tx, "downgrades", `SELECT domain, time, status = 'sent' AND tls IS 0 FROM deliveries INDEXED BY deliveries_bad
		WHERE `+where, cat([]any{p.lo, p.hi}, da), func(rows *sql.Rows) error {
		var (
			d     string
			at    int64
			plain bool
		)
		if err := rows.Scan(&d, &at, &plain); err != nil {
			return err
		}
		first, seen := firsts[d]
		if !seen {
			if err := firstEnc.QueryRowContext(ctx, reverse(d)).Scan(&first); err != nil {
				return fmt.Errorf("%s: %w", d, err)
			}
			firsts[d] = first
		}
		if !first.Valid || at <= first.Int64 {
			return nil
		}
		sp := spans[d]
		if sp == nil {
			sp = &span{min: at, max: at}
			spans[d] = sp
		}
		sp.n++
		if plain {
			sp.plain++
		} else {
			sp.fail++ // bad and not plaintext: a TLS failure
		}
		sp.min, sp.max = min(sp.min, at), max(sp.max, at)
		return nil
	})
	if err != nil {
		return nil, err
	}

	var out []Downgrade
	for d, sp := range spans {
		rd := reverse(d)
		dg := Downgrade{Domain: d, Count: sp.n, Plaintext: sp.plain, TLSFailures: sp.fail,
			FirstSeen: fromMicros(sp.min), LastSeen: fromMicros(sp.max)}
		f, fday := sp.min, floorDiv(sp.min, usPerDay)
		var from sql.NullInt64
		if err := straddle.QueryRowContext(ctx, rd, fday, f, f).Scan(&from); err != nil {
			return nil, fmt.Errorf("store: downgrades %s: %w", d, err)
		}
		var at int64
		if from.Valid {
			err = lastRaw.QueryRowContext(ctx, from.Int64, f, d).Scan(&at, &dg.LastTLSTrust, &dg.LastTLSProtocol, &dg.LastTLSCipher)
		} else {
			err = lastRoll.QueryRowContext(ctx, rd, fday, f).Scan(&at, &dg.LastTLSTrust, &dg.LastTLSProtocol, &dg.LastTLSCipher)
		}
		if err != nil {
			return nil, fmt.Errorf("store: downgrades %s: last TLS delivery: %w", d, err)
		}
		dg.LastTLSAt = fromMicros(at)
		out = append(out, dg)
	}
	return out, nil
}

// OverrideStats is the traffic an override key covered in a window.
type OverrideStats struct {
	Key         string
	Sent        int64
	Encrypted   int64 // of Sent
	Plaintext   int64 // of Sent
	Deferred    int64
	TLSDeferred int64 // of Deferred: caused by TLS
	Bounced     int64
	Expired     int64
}

// OverrideActivity counts, for each override key, the deliveries in w it
// would apply to: "example.com" matches that recipient domain,
// ".example.com" its subdomains only (as Postfix does), and "[host]:port"
// (or "[host]", port 25) deliveries whose logged relay is host[addr]:port.
// Matching by recipient domain approximates Postfix, which looks up the
// next-hop (different when a transport map routes the domain elsewhere).
// w.Domain, if set, further restricts the deliveries.
func (s *Store) OverrideActivity(ctx context.Context, w Window, keys []string) ([]OverrideStats, error) {
	m, err := w.matcher()
	if err != nil {
		return nil, err
	}
	kms := make([]matcher, len(keys))
	for i, key := range keys {
		if kms[i], err = parseOverrideKey(key); err != nil {
			return nil, err
		}
	}
	out := make([]OverrideStats, 0, len(keys))
	err = s.read(ctx, func(tx *sql.Tx) error {
		p, err := fittedPlan(ctx, tx, w.Since, w.Until, m, w.IncludeInternal)
		if err != nil {
			return err
		}
		for i, key := range keys {
			st, err := overrideStats(ctx, tx, p, key, kms[i])
			if err != nil {
				return err
			}
			out = append(out, st)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func overrideStats(ctx context.Context, tx *sql.Tx, p plan, key string, km matcher) (OverrideStats, error) {
	kr, kra := km.rollWhere()
	kd, kda := km.rawWhere()
	src, args := p.dimsSource(kr, kd, kra, kda)
	st := OverrideStats{Key: key}
	err := queryRows(ctx, tx, "override activity "+key, `SELECT
		coalesce(sum(CASE WHEN status = 'sent' THEN n END), 0),
		coalesce(sum(CASE WHEN status = 'sent' AND tls = 1 THEN n END), 0),
		coalesce(sum(CASE WHEN status = 'sent' AND tls = 0 THEN n END), 0),
		coalesce(sum(CASE WHEN status = 'deferred' THEN n END), 0),
		coalesce(sum(CASE WHEN status = 'deferred' AND tls_failure = 1 THEN n END), 0),
		coalesce(sum(CASE WHEN status = 'bounced' THEN n END), 0),
		coalesce(sum(CASE WHEN status = 'expired' THEN n END), 0)
		FROM (`+src+`)`, args, func(rows *sql.Rows) error {
		return rows.Scan(&st.Sent, &st.Encrypted, &st.Plaintext, &st.Deferred, &st.TLSDeferred, &st.Bounced, &st.Expired)
	})
	return st, err
}

// Suggestion proposes an override for a destination whose deliveries
// have all been encrypted.
type Suggestion struct {
	Domain string
	// Level is "verify" when every encrypted session was Verified or
	// Trusted, else "encrypt".
	Level               string
	Deliveries          int64 // sent deliveries
	Days                int64 // distinct UTC days with a sent delivery
	FirstSeen, LastSeen time.Time
}

// Suggest lists recipient domains whose stored history before now has at
// least minDeliveries sent deliveries on at least minDays distinct UTC days,
// all of them encrypted (no plaintext, no unknown TLS state) and no TLS
// failure of any delivery. Ordered by Deliveries descending. It reads every
// daily rollup row (all history), so its cost grows with the number of
// distinct (domain, day) pairs stored. Internal hops count only with
// includeInternal (they are plaintext as a rule, so they can only rule a
// domain out).
func (s *Store) Suggest(ctx context.Context, minDeliveries, minDays int, now time.Time, includeInternal bool) ([]Suggestion, error) {
	if minDeliveries < 1 || minDays < 1 {
		return nil, fmt.Errorf("%w: suggest needs at least 1 delivery on at least 1 day (got %d deliveries, %d days)", ErrBadInput, minDeliveries, minDays)
	}
	p := planFor(time.Time{}, now, matcher{kind: matchAll})
	p.internal = includeInternal
	// With internal hops, both rollups are read as one, so that a day
	// with rows in each counts once.
	roll := "rollup_day"
	if includeInternal {
		roll = "(SELECT * FROM rollup_day UNION ALL SELECT * FROM rollup_day_internal)"
	}
	// Per domain: sent, encrypted, not clean (plaintext/unknown sent or
	// any TLS failure), sent on verified/trusted sessions, distinct sent
	// days. The rollup part (whole days) and the raw part (today so far)
	// cover disjoint days, so their distinct-day counts add up.
	q := `SELECT rd, sum(sent), sum(enc), sum(vt), sum(days), min(ft), max(lt) FROM (
		SELECT rdomain AS rd,
			sum(CASE WHEN status = 'sent' THEN n ELSE 0 END) AS sent,
			sum(CASE WHEN status = 'sent' AND tls = 1 THEN n ELSE 0 END) AS enc,
			sum(CASE WHEN (status = 'sent' AND tls <> 1) OR tls_failure = 1 THEN n ELSE 0 END) AS unclean,
			sum(CASE WHEN status = 'sent' AND tls = 1 AND trust IN ('verified', 'trusted') THEN n ELSE 0 END) AS vt,
			count(DISTINCT CASE WHEN status = 'sent' THEN day END) AS days,
			min(CASE WHEN status = 'sent' THEN first_time END) AS ft,
			max(CASE WHEN status = 'sent' THEN last_time END) AS lt
		FROM ` + roll + ` WHERE +day >= ? AND +day < ? GROUP BY rdomain
		UNION ALL
		SELECT mailtls_rev(domain), count(CASE WHEN status = 'sent' THEN 1 END),
			count(CASE WHEN status = 'sent' AND tls = 1 THEN 1 END),
			count(CASE WHEN (status = 'sent' AND tls IS NOT 1) OR tls_failure = 1 THEN 1 END),
			count(CASE WHEN status = 'sent' AND tls = 1 AND tls_trust IN ('verified', 'trusted') THEN 1 END),
			count(DISTINCT CASE WHEN status = 'sent' THEN time / ` + fmt.Sprint(usPerDay) + ` END),
			min(CASE WHEN status = 'sent' THEN time END),
			max(CASE WHEN status = 'sent' THEN time END)
		FROM deliveries WHERE ` + edgeSQL + ` AND ` + p.rawInternal() + ` GROUP BY domain
	) GROUP BY rd HAVING sum(sent) >= ? AND sum(unclean) = 0 AND sum(enc) = sum(sent) AND sum(days) >= ?`
	args := cat(p.day.wholeArgs(), p.day.edgeArgs(), []any{minDeliveries, minDays})
	var out []Suggestion
	err := s.read(ctx, func(tx *sql.Tx) error {
		return queryRows(ctx, tx, "suggest", q, args, func(rows *sql.Rows) error {
			var (
				sg                   Suggestion
				rd                   string
				enc, vt, first, last int64
			)
			if err := rows.Scan(&rd, &sg.Deliveries, &enc, &vt, &sg.Days, &first, &last); err != nil {
				return err
			}
			sg.Domain = reverse(rd)
			sg.Level = "encrypt"
			if vt == sg.Deliveries {
				sg.Level = "verify"
			}
			sg.FirstSeen, sg.LastSeen = fromMicros(first), fromMicros(last)
			out = append(out, sg)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Deliveries != out[j].Deliveries {
			return out[i].Deliveries > out[j].Deliveries
		}
		return out[i].Domain < out[j].Domain
	})
	return out, nil
}

// DryRunResult is what a policy would have done to past deliveries.
type DryRunResult struct {
	Deliveries int64 // sent deliveries matching the key
	Plaintext  int64 // of those, plaintext
	Unverified int64 // of those, encrypted with an anonymous or untrusted peer
	WouldDefer int64 // deliveries the level would have deferred instead
}

// DryRun estimates the effect of setting key to level on the deliveries
// since since (up to now): "encrypt" defers plaintext deliveries; "verify",
// "secure", "dane-only" and "fingerprint" also defer encrypted deliveries
// whose peer was anonymous or untrusted (a lower bound for dane-only and
// fingerprint); "none", "may" and "dane" (opportunistic without TLSA
// records) defer nothing. Deliveries with unknown TLS state are counted in
// Deliveries only. level may be a whole policy; its first word is used.
func (s *Store) DryRun(ctx context.Context, key, level string, since time.Time) (DryRunResult, error) {
	km, err := parseOverrideKey(key)
	if err != nil {
		return DryRunResult{}, err
	}
	lv := policyd.LevelOf(level)
	if !policyd.IsLevel(lv) {
		return DryRunResult{}, fmt.Errorf("%w: TLS level %q; accepted: none, may, encrypt, dane, dane-only, fingerprint, verify, secure", ErrBadInput, level)
	}
	// Mandatory levels defer plaintext, authenticating ones also an
	// anonymous or untrusted peer.
	strict, auth := policyd.RequiresTLS(lv), policyd.Authenticates(lv)
	kr, kra := km.rollWhere()
	kd, kda := km.rawWhere()
	var res DryRunResult
	err = s.read(ctx, func(tx *sql.Tx) error {
		p, err := fittedPlan(ctx, tx, since, s.now(), matcher{kind: matchAll}, false)
		if err != nil {
			return err
		}
		src, args := p.dimsSource(kr+" AND status = 'sent'", kd+" AND status = 'sent'", kra, kda)
		return queryRows(ctx, tx, "dry run "+key, `SELECT coalesce(sum(n), 0),
		coalesce(sum(CASE WHEN tls = 0 THEN n END), 0),
		coalesce(sum(CASE WHEN tls = 1 AND trust IN ('anonymous', 'untrusted') THEN n END), 0)
		FROM (`+src+`)`, args, func(rows *sql.Rows) error {
			return rows.Scan(&res.Deliveries, &res.Plaintext, &res.Unverified)
		})
	})
	if err != nil {
		return DryRunResult{}, err
	}
	if strict {
		res.WouldDefer += res.Plaintext
	}
	if auth {
		res.WouldDefer += res.Unverified
	}
	return res, nil
}
