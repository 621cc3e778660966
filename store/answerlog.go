package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/policyd"
)

// The answer log keeps what the daemon's published-policy cache answered
// for each destination over time: one row per destination each time its
// answer (source, policy, MTA-STS policy id) changes, so that a delivery
// can be joined to the answer in force at its time (`report --by policy`).
// It is compact: a destination whose answer never changes has one row,
// however often it is resolved again.
//
// Rows are written by SavePublishedAnswer, in the transaction that stores
// the cache entry: the resolver's background workers call it after a
// resolution, never the lookup path, and a row costs no commit of its own.
// Prune drops the rows superseded before the pruning horizon, keeping for
// each destination the one still in force there.
const answerLogSchema = `
CREATE TABLE answer_log (
	domain    TEXT NOT NULL,
	at        INTEGER NOT NULL,  -- unix microseconds: in force from then on
	source    TEXT NOT NULL,     -- dane | mta-sts | none
	policy    TEXT NOT NULL,     -- the Postfix answer; '' with none
	policy_id TEXT NOT NULL,     -- the MTA-STS policy id, '' without one
	PRIMARY KEY (domain, at)
) WITHOUT ROWID;
`

// AnswerChange is one row of the answer log.
type AnswerChange struct {
	Domain   string
	At       time.Time
	Source   string // dane | mta-sts | none
	Policy   string // "" with none
	PolicyID string // the MTA-STS policy id, also for a testing policy
}

// SavePublishedAnswer is SavePublished, and also appends the answer to the
// answer log when it differs from the destination's latest logged one. at
// is when the answer was resolved; the zero time means now. A row at or
// before the latest logged time of domain moves to just after it, so the
// log stays in time order.
func (s *Store) SavePublishedAnswer(ctx context.Context, domain, source, policy, policyID string, data []byte, at, expires time.Time) error {
	if err := checkText("published domain", domain, false); err != nil {
		return err
	}
	if err := checkText("published source of "+domain, source, false); err != nil {
		return err
	}
	if policyID != "" {
		if err := checkText("policy id of "+domain, policyID, false); err != nil {
			return err
		}
	}
	policy = safeText(policy) // fetched text (see text.go)
	if at.IsZero() {
		at = s.now()
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		if err := savePublishedTx(ctx, tx, domain, source, policy, data, s.now(), expires); err != nil {
			return err
		}
		return logAnswerTx(ctx, tx, AnswerChange{Domain: domain, At: at, Source: source, Policy: policy, PolicyID: policyID})
	})
}

func logAnswerTx(ctx context.Context, tx *sql.Tx, a AnswerChange) error {
	var (
		last                     int64
		source, policy, policyID string
	)
	err := tx.QueryRowContext(ctx, `SELECT at, source, policy, policy_id FROM answer_log WHERE domain = ? ORDER BY at DESC LIMIT 1`,
		a.Domain).Scan(&last, &source, &policy, &policyID)
	switch {
	case err == sql.ErrNoRows:
		last = math.MinInt64
	case err != nil:
		return fmt.Errorf("store: answer log of %s: %w", a.Domain, err)
	case source == a.Source && policy == a.Policy && policyID == a.PolicyID:
		return nil // unchanged
	}
	us := max(micros(a.At), last+1)
	if last == math.MinInt64 {
		us = micros(a.At)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO answer_log(domain, at, source, policy, policy_id) VALUES (?, ?, ?, ?, ?)`,
		a.Domain, us, a.Source, a.Policy, a.PolicyID); err != nil {
		return fmt.Errorf("store: answer log of %s: %w", a.Domain, err)
	}
	return nil
}

// AnswerLog calls fn for the logged answers of domain ("" = every
// domain), by domain, then in time order.
func (s *Store) AnswerLog(ctx context.Context, domain string, fn func(AnswerChange) error) error {
	q, args := `SELECT domain, at, source, policy, policy_id FROM answer_log ORDER BY domain, at`, []any(nil)
	if domain != "" {
		q, args = `SELECT domain, at, source, policy, policy_id FROM answer_log WHERE domain = ? ORDER BY at`, []any{domain}
	}
	return s.read(ctx, func(tx *sql.Tx) error {
		return queryRows(ctx, tx, "answer log", q, args, func(rows *sql.Rows) error {
			var (
				a  AnswerChange
				us int64
			)
			if err := rows.Scan(&a.Domain, &us, &a.Source, &a.Policy, &a.PolicyID); err != nil {
				return err
			}
			a.At = fromMicros(us)
			return fn(a)
		})
	})
}

// pruneAnswerLog deletes the rows superseded by a later row at or before
// h: the answers no delivery still stored can have been made under.
func pruneAnswerLog(ctx context.Context, tx *sql.Tx, h int64) (int64, error) {
	r, err := tx.ExecContext(ctx, `DELETE FROM answer_log WHERE at < ? AND EXISTS (
		SELECT 1 FROM answer_log later WHERE later.domain = answer_log.domain AND later.at > answer_log.at AND later.at <= ?)`, h, h)
	if err != nil {
		return 0, fmt.Errorf("store: prune answer log: %w", err)
	}
	return r.RowsAffected()
}

// publishedSpan is one interval during which a destination's published
// answer was a policy (source dane or mta-sts).
type publishedSpan struct {
	tspan
	source string
	policy string
}

// publishedHistory reads the answer log into the intervals during which
// each destination had a dane or mta-sts answer, limited to those that
// overlap [lo, hi).
func publishedHistory(ctx context.Context, tx *sql.Tx, lo, hi int64) (map[string][]publishedSpan, error) {
	out := map[string][]publishedSpan{}
	var (
		cur  string
		open *publishedSpan
	)
	flush := func(end int64) {
		if open != nil {
			open.hi = end
			if open.lo < hi && open.hi > lo {
				out[cur] = append(out[cur], *open)
			}
			open = nil
		}
	}
	err := queryRows(ctx, tx, "answer log", `SELECT domain, at, source, policy FROM answer_log WHERE at < ? ORDER BY domain, at`,
		[]any{hi}, func(rows *sql.Rows) error {
			var (
				d, source, policy string
				at                int64
			)
			if err := rows.Scan(&d, &at, &source, &policy); err != nil {
				return err
			}
			if d != cur {
				flush(math.MaxInt64)
				cur = d
			}
			flush(at)
			if source == "dane" || source == "mta-sts" {
				open = &publishedSpan{tspan{at, math.MaxInt64}, source, policy}
			}
			return nil
		})
	flush(math.MaxInt64)
	return out, err
}

// PolicySources are the keys of ReportBy(policy), in precedence order.
var PolicySources = []string{"override", "dane", "mta-sts", "default"}

// policyRows is ReportBy(policy): each sent delivery of the window is
// joined to the answer in force for it at its time: the override that
// governed it (the rules of inforce.go), else the published answer of its
// recipient domain in the answer log, else the default. When the delivery
// line carries Postfix 3.11's tls= field, the level it names is the truth:
// a candidate answer counts only if its level is that level, and a
// delivery whose level no candidate had is counted under default (Postfix
// applied a level mailtls did not answer).
//
// Cost: no rollup knows the answer, so this reads the raw rows of the
// window (from the pruning horizon on: earlier rows are gone) through the
// time index, plus the override history and the answer log once. The rows
// no answer can have governed (recipient domain not in the answer log, no
// override key matching; see policyCandidates) are counted from the index
// alone; only the others are read from the table (relay, tls= field) and
// joined in Go. A [host]:port override, or more than maxCandidateKeys
// override keys, makes every row a candidate. The window is the caller's
// bound (report defaults to 7 days).
func policyRows(ctx context.Context, tx *sql.Tx, p plan) ([]Row, error) {
	hist, _, err := overrideHistory(ctx, tx)
	if err != nil {
		return nil, err
	}
	nodes := buildKeyTree(hist)
	relays := map[relayAt]*keyNode{}
	for _, n := range nodes {
		if n.m.kind == matchRelay {
			relays[relayAt{n.m.host, n.m.port}] = n
		}
	}
	lo, hi := max(p.lo, p.horizon), p.hi
	pub, err := publishedHistory(ctx, tx, lo, hi)
	if err != nil {
		return nil, err
	}
	counts := map[string]*Row{}
	for _, k := range PolicySources {
		counts[k] = &Row{Key: k}
	}
	dw, da := p.m.rawWhere()
	cand, ca := policyCandidates(nodes, hi)
	base := ` FROM deliveries WHERE status = 'sent' AND time >= ? AND time < ? AND ` + dw + ` AND ` + p.rawInternal()
	args := cat([]any{lo, hi}, da, ca)
	// The deliveries no answer can have governed are default, counted
	// from the time index alone.
	def := counts["default"]
	if err := tx.QueryRowContext(ctx, `SELECT count(*), count(CASE WHEN tls = 1 THEN 1 END), count(CASE WHEN tls = 0 THEN 1 END)`+
		base+` AND NOT `+cand, args...).Scan(&def.Deliveries, &def.Encrypted, &def.Plaintext); err != nil {
		return nil, fmt.Errorf("store: report by policy: %w", err)
	}
	q := `SELECT time, domain, relay, tls, json_extract(detail, '$[8]')` + base + ` AND ` + cand
	err = queryRows(ctx, tx, "report by policy", q, args, func(rows *sql.Rows) error {
		var (
			us           int64
			domain, rel  string
			tls          sql.NullBool
			feature      sql.NullString
			overrideWith string
			haveOverride bool
		)
		if err := rows.Scan(&us, &domain, &rel, &tls, &feature); err != nil {
			return err
		}
		domain = strings.ToLower(domain)
		rh, rp := splitRelay(rel)
		governing(nodes, relays, domain, relayAt{rh, rp}, us, func(_ *keyNode, policy string) {
			if !haveOverride {
				overrideWith, haveOverride = policy, true
			}
		})
		var pubSource, pubPolicy string
		for _, s := range pub[domain] {
			if us >= s.lo && us < s.hi {
				pubSource, pubPolicy = s.source, s.policy
				break
			}
		}
		key := "default"
		level := ""
		if feature.Valid {
			level = logparse.TLSFeatureLevel(feature.String)
		}
		fits := func(policy string) bool { return level == "" || policyd.LevelOf(policy) == level }
		switch {
		case haveOverride && fits(overrideWith):
			key = "override"
		case pubSource != "" && fits(pubPolicy):
			key = pubSource
		}
		r := counts[key]
		r.Deliveries++
		if tls.Valid && tls.Bool {
			r.Encrypted++
		} else if tls.Valid {
			r.Plaintext++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]Row, 0, len(PolicySources))
	for _, k := range PolicySources {
		r := counts[k]
		r.Coverage = coverage(r.Encrypted, r.Plaintext)
		out = append(out, *r)
	}
	return out, nil
}

// maxCandidateKeys bounds the override keys policyCandidates spells out
// in SQL; with more, every delivery is a candidate.
const maxCandidateKeys = 200

// policyCandidates is the SQL condition (and its arguments) on a delivery
// row that some answer other than the default may have governed it: its
// recipient domain is in the answer log (before hi), or an override key
// matches it. With more than maxCandidateKeys override keys it is true.
func policyCandidates(nodes map[string]*keyNode, hi int64) (string, []any) {
	parts := []string{`lower(domain) IN (SELECT domain FROM answer_log WHERE at < ?)`}
	args := []any{hi}
	if len(nodes) > maxCandidateKeys {
		return "TRUE", nil
	}
	keys := make([]string, 0, len(nodes))
	for k := range nodes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		w, a := nodes[k].m.rawWhere()
		parts = append(parts, w)
		args = append(args, a...)
	}
	return "(" + strings.Join(parts, " OR ") + ")", args
}

// DeliveriesTo calls fn for each delivery in [since, until) (zero =
// unbounded) whose recipient domain is one of domains (lower case, as
// stored), in time order. It reads the window's time index once and the
// table only for matching rows: the cost of `report policies`.
func (s *Store) DeliveriesTo(ctx context.Context, domains []string, since, until time.Time, fn func(delivery.Delivery) error) error {
	if len(domains) == 0 {
		return nil
	}
	list, err := json.Marshal(domains)
	if err != nil {
		return fmt.Errorf("store: deliveries to: %w", err)
	}
	lo, hi := bounds(since, until)
	q := `SELECT ` + deliveryCols + `
		FROM deliveries WHERE time >= ? AND time < ? AND domain IN (SELECT value FROM json_each(?)) ORDER BY time, id`
	return s.read(ctx, func(tx *sql.Tx) error {
		return streamDeliveries(ctx, tx, q, []any{lo, hi, string(list)}, fn)
	})
}
