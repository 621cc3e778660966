package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/policyd"
)

// An override counts the deliveries it governed: those made while it was
// in force, to destinations it applied to. The in-force intervals come from
// the override history (set, changed, removed, set again) and, for the
// override stored now, its expiry; an expiry set on an earlier version of
// an override is not in the history, so such an interval ends only at the
// next change.
//
// Which key governs a delivery follows the daemon (policyd.Snapshot.Lookup):
// the recipient domain's own key, else the nearest ".parent" key, among the
// keys in force at the time. So ".example.com" does not count the deliveries
// to a.example.com while "a.example.com" (or, for b.a.example.com,
// ".a.example.com") was in force. A "[host]:port" key is a transport
// next-hop, which the log does not record; it is matched by the relay the
// delivery went to (host and port as logged), and it neither shadows nor is
// shadowed by domain keys.

// span of time in unix microseconds, [lo, hi).
type tspan struct{ lo, hi int64 }

// inForce is one interval during which a key had one policy.
type inForce struct {
	tspan
	policy string
}

func intersect(a []tspan, b tspan) []tspan {
	var out []tspan
	for _, s := range a {
		if lo, hi := max(s.lo, b.lo), min(s.hi, b.hi); lo < hi {
			out = append(out, tspan{lo, hi})
		}
	}
	return out
}

// subtract returns the parts of a not covered by b (both sorted, disjoint).
func subtract(a, b []tspan) []tspan {
	var out []tspan
	for _, s := range a {
		cur := []tspan{s}
		for _, x := range b {
			var next []tspan
			for _, c := range cur {
				if x.hi <= c.lo || x.lo >= c.hi {
					next = append(next, c)
					continue
				}
				if c.lo < x.lo {
					next = append(next, tspan{c.lo, x.lo})
				}
				if x.hi < c.hi {
					next = append(next, tspan{x.hi, c.hi})
				}
			}
			cur = next
		}
		out = append(out, cur...)
	}
	return out
}

func spans(fs []inForce) []tspan {
	out := make([]tspan, len(fs))
	for i, f := range fs {
		out[i] = f.tspan
	}
	return out
}

// overrideHistory reads the in-force intervals of every key that has or
// had an override, in time order, and the overrides stored now.
func overrideHistory(ctx context.Context, tx *sql.Tx) (map[string][]inForce, map[string]Override, error) {
	cur := map[string]Override{}
	err := queryRows(ctx, tx, "overrides", `SELECT key, policy, created, expires FROM overrides`, nil, func(rows *sql.Rows) error {
		var (
			o       Override
			created int64
			expires sql.NullInt64
		)
		if err := rows.Scan(&o.Key, &o.Policy, &created, &expires); err != nil {
			return err
		}
		o.Created, o.Expires = time.Unix(created, 0).UTC(), fromUnixNull(expires)
		cur[o.Key] = o
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	out := map[string][]inForce{}
	open := map[string]*inForce{}
	err = queryRows(ctx, tx, "override history", `SELECT key, new, at FROM override_history ORDER BY id`, nil, func(rows *sql.Rows) error {
		var (
			key string
			nw  sql.NullString
			at  int64
		)
		if err := rows.Scan(&key, &nw, &at); err != nil {
			return err
		}
		us := at * 1e6
		if f := open[key]; f != nil {
			if f.hi = us; f.lo < f.hi {
				out[key] = append(out[key], *f)
			}
			delete(open, key)
		}
		if nw.Valid {
			open[key] = &inForce{tspan{us, math.MaxInt64}, nw.String}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for key, o := range cur {
		f := open[key]
		if f == nil { // no history for it (written by hand?): from its creation
			f = &inForce{tspan{o.Created.Unix() * 1e6, math.MaxInt64}, o.Policy}
		}
		f.policy = o.Policy
		if !o.Expires.IsZero() {
			f.hi = o.Expires.Unix() * 1e6
		}
		if f.lo < f.hi {
			out[key] = append(out[key], *f)
		}
		delete(open, key)
	}
	// History that ends in force for a key no longer stored: the row was
	// removed without a history entry; end the interval at its last change.
	return out, cur, nil
}

// keyNode is an override key with the more specific domain keys it
// contains (see the rules above).
type keyNode struct {
	key      string
	m        matcher
	forced   []inForce
	children []*keyNode
}

// buildKeyTree links every domain key to its maximal sub-keys: the exact
// and ".parent" keys strictly inside its domain set, not inside another of
// them.
func buildKeyTree(hist map[string][]inForce) map[string]*keyNode {
	nodes := map[string]*keyNode{}
	for k, f := range hist {
		m, err := parseOverrideKey(k)
		if err != nil {
			continue // a key the daemon would refuse; it governed nothing
		}
		nodes[k] = &keyNode{key: k, m: m, forced: f}
	}
	// covers: is every domain b's key matches also matched by a (a != b)?
	covers := func(a, b matcher) bool {
		if a.kind != matchSubs || (b.kind != matchExact && b.kind != matchSubs) {
			return false
		}
		return b.domain != a.domain && strings.HasSuffix(b.domain, "."+a.domain)
	}
	for _, n := range nodes {
		if n.m.kind != matchSubs {
			continue
		}
		var inner []*keyNode
		for _, c := range nodes {
			if covers(n.m, c.m) {
				inner = append(inner, c)
			}
		}
		for _, c := range inner {
			maximal := true
			for _, d := range inner {
				if d != c && covers(d.m, c.m) {
					maximal = false
					break
				}
			}
			if maximal {
				n.children = append(n.children, c)
			}
		}
		sort.Slice(n.children, func(i, j int) bool { return n.children[i].key < n.children[j].key })
	}
	return nodes
}

// OverrideInForce is what one override governed in a window.
type OverrideInForce struct {
	OverrideStats
	Policy       string    // now
	InForceSince time.Time // start of the interval in force now (zero: expired)
}

// ForcedPlaintext is a destination that got plaintext while an override
// forced it to a mandatory level: Postfix did not ask mailtls (no
// smtp_tls_policy_maps, a transport that bypasses it, or mail sent by
// another host).
type ForcedPlaintext struct {
	Key    string
	Policy string // the mandatory policy in force at the first such delivery
	Count  int64  // plaintext sent deliveries while forced
	// First is the first such delivery, when its row is still stored
	// (HaveFirst); before a pruning horizon only the count is known.
	First     delivery.Delivery
	HaveFirst bool
}

// OverridesInForce reports, for each override stored now (in key order),
// what it governed during w while it was in force (see the rules above).
// Before a pruning horizon only whole days are kept, so the parts of
// in-force intervals that are not whole days there are not counted. now
// ends the interval of an override still in force.
func (s *Store) OverridesInForce(ctx context.Context, w Window, now time.Time) ([]OverrideInForce, error) {
	wm, err := w.matcher()
	if err != nil {
		return nil, err
	}
	var rows []OverrideInForce
	err = s.read(ctx, func(tx *sql.Tx) error {
		hist, cur, err := overrideHistory(ctx, tx)
		if err != nil {
			return err
		}
		nodes := buildKeyTree(hist)
		h, err := horizon(ctx, tx)
		if err != nil {
			return err
		}
		lo, hi := bounds(w.Since, w.Until)
		hi = min(hi, micros(now))
		g := governor{ctx: ctx, tx: tx, wm: wm, horizon: h, internal: w.IncludeInternal}
		for k, o := range cur {
			r := OverrideInForce{Policy: o.Policy}
			r.Key = k
			if n := nodes[k]; n != nil {
				for _, f := range n.forced {
					part := intersect([]tspan{f.tspan}, tspan{lo, hi})
					if len(part) == 0 {
						continue
					}
					st, err := g.governed(n, part)
					if err != nil {
						return err
					}
					r.add(st, 1)
				}
				if last := n.forced[len(n.forced)-1]; last.hi > micros(now) {
					r.InForceSince = fromMicros(last.lo)
				}
			}
			rows = append(rows, r)
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].Key < rows[j].Key })
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// ForcedPlaintextIn returns the keys (stored now or since removed) that
// governed plaintext sent deliveries in w while forced to a mandatory
// level, in key order. Only deliveries whose rows are still stored count.
// Internal hops count only with w.IncludeInternal.
//
// Cost, as report and status call it every time: one scan of the override
// history for a mandatory level, and nothing more when there is none. Else
// the history is read, and for each key forced during w the daily rollup
// tells on which days its destinations got plaintext (a key range: one
// seek per key, internal hops apart in their own rollup); only those days'
// rows are read, through the time index, for that key's destinations.
func (s *Store) ForcedPlaintextIn(ctx context.Context, w Window) ([]ForcedPlaintext, error) {
	wm, err := w.matcher()
	if err != nil {
		return nil, err
	}
	var out []ForcedPlaintext
	err = s.read(ctx, func(tx *sql.Tx) error {
		// Without a mandatory level in the history (policies are stored
		// normalised, level first, lowercase), no need to read it all.
		var forcedEver bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM override_history WHERE substr(new, 1, 7) = 'encrypt'
			OR substr(new, 1, 9) = 'dane-only' OR substr(new, 1, 11) = 'fingerprint' OR substr(new, 1, 6) IN ('verify', 'secure'))`).Scan(&forcedEver); err != nil {
			return fmt.Errorf("store: forced plaintext: %w", err)
		}
		if !forcedEver {
			return nil
		}
		hist, _, err := overrideHistory(ctx, tx)
		if err != nil {
			return err
		}
		nodes := buildKeyTree(hist)
		relays := map[relayAt]*keyNode{}
		for _, n := range nodes {
			if n.m.kind == matchRelay {
				relays[relayAt{n.m.host, n.m.port}] = n
			}
		}
		lo, hi := bounds(w.Since, w.Until)
		keys := make([]string, 0, len(nodes))
		for k := range nodes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			n := nodes[k]
			var forced []tspan
			for _, f := range n.forced {
				if policyd.RequiresTLS(f.policy) {
					forced = append(forced, intersect([]tspan{f.tspan}, tspan{lo, hi})...)
				}
			}
			if len(forced) == 0 {
				continue
			}
			fp, err := forcedPlaintext(ctx, tx, n, forced, wm, w.IncludeInternal, nodes, relays)
			if err != nil {
				return err
			}
			if fp.Count > 0 {
				out = append(out, fp)
			}
		}
		return nil
	})
	return out, err
}

// forcedPlaintext counts the plaintext sent deliveries during forced
// (sorted, disjoint) that n governed, and finds the first.
func forcedPlaintext(ctx context.Context, tx *sql.Tx, n *keyNode, forced []tspan, wm matcher, internal bool,
	nodes map[string]*keyNode, relays map[relayAt]*keyNode) (ForcedPlaintext, error) {
	fp := ForcedPlaintext{Key: n.key}
	kr, kra := n.m.rollWhere()
	rw, ra := wm.rollWhere()
	d0, d1 := floorDiv(forced[0].lo, usPerDay), floorDiv(forced[len(forced)-1].hi-1, usPerDay)
	dq := `SELECT day FROM rollup_day WHERE day >= ? AND day <= ? AND status = 'sent' AND tls = 0 AND ` + kr + ` AND ` + rw
	dargs := cat([]any{d0, d1}, kra, ra)
	if internal {
		dq += ` UNION SELECT day FROM rollup_day_internal WHERE day >= ? AND day <= ? AND status = 'sent' AND tls = 0 AND ` + kr + ` AND ` + rw
		dargs = cat(dargs, dargs)
	} else {
		dq = `SELECT DISTINCT day FROM (` + dq + `)`
	}
	var days []int64
	if err := queryRows(ctx, tx, "forced plaintext days", dq+` ORDER BY day`, dargs, func(rows *sql.Rows) error {
		var d int64
		if err := rows.Scan(&d); err != nil {
			return err
		}
		days = append(days, d)
		return nil
	}); err != nil {
		return fp, err
	}
	if len(days) == 0 {
		return fp, nil
	}
	kd, kda := n.m.rawWhere()
	dw, da := wm.rawWhere()
	ic := "internal = 0"
	if internal {
		ic = "TRUE"
	}
	q := `SELECT ` + deliveryCols + `
		FROM deliveries WHERE time >= ? AND time < ? AND status = 'sent' AND tls = 0 AND ` + kd + ` AND ` + dw + ` AND ` + ic + `
		ORDER BY time, id`
	for _, day := range days {
		for _, t := range intersect(forced, tspan{day * usPerDay, (day + 1) * usPerDay}) {
			err := streamDeliveries(ctx, tx, q, cat([]any{t.lo, t.hi}, kda, da), func(d delivery.Delivery) error {
				rh, rp := splitRelay(d.Relay)
				governing(nodes, relays, strings.ToLower(d.Domain), relayAt{rh, rp}, micros(d.Time), func(g *keyNode, policy string) {
					if g != n || !policyd.RequiresTLS(policy) {
						return
					}
					if fp.Count == 0 {
						fp.First, fp.HaveFirst, fp.Policy = d, true, policy
					}
					fp.Count++
				})
				return nil
			})
			if err != nil {
				return fp, err
			}
		}
	}
	return fp, nil
}

// governing returns the keys that governed a delivery to domain through
// relay at us (unix microseconds), with their policies then: the domain's
// own key, else the nearest .parent key, among those in force; and a
// [host]:port key matching the relay, if in force (see the rules above:
// the two kinds do not shadow each other).
func governing(nodes map[string]*keyNode, relays map[relayAt]*keyNode, domain string, relay relayAt, us int64, fn func(n *keyNode, policy string)) {
	at := func(n *keyNode) (string, bool) {
		if n == nil {
			return "", false
		}
		for _, f := range n.forced {
			if us >= f.lo && us < f.hi {
				return f.policy, true
			}
		}
		return "", false
	}
	if n := relays[relay]; n != nil {
		if p, ok := at(n); ok {
			fn(n, p)
		}
	}
	if p, ok := at(nodes[domain]); ok {
		fn(nodes[domain], p)
		return
	}
	for i := 0; i < len(domain); i++ {
		if domain[i] == '.' {
			if p, ok := at(nodes[domain[i:]]); ok {
				fn(nodes[domain[i:]], p)
				return
			}
		}
	}
}

func (a *OverrideStats) add(b OverrideStats, sign int64) {
	a.Sent += sign * b.Sent
	a.Encrypted += sign * b.Encrypted
	a.Plaintext += sign * b.Plaintext
	a.Deferred += sign * b.Deferred
	a.TLSDeferred += sign * b.TLSDeferred
	a.Bounced += sign * b.Bounced
	a.Expired += sign * b.Expired
}

// governor counts governed deliveries in one read transaction.
type governor struct {
	ctx      context.Context
	tx       *sql.Tx
	wm       matcher // the window's domain filter
	horizon  int64
	internal bool
}

// count adds up the deliveries matching n's key during ts.
func (g *governor) count(n *keyNode, ts []tspan) (OverrideStats, error) {
	var sum OverrideStats
	for _, t := range ts {
		since, until := fromMicros(t.lo), time.Time{}
		if t.hi != math.MaxInt64 {
			until = fromMicros(t.hi)
		}
		if g.horizon != horizonNone {
			since, until = FitWindow(since, until, fromMicros(g.horizon))
			if !until.IsZero() && !since.Before(until) {
				continue // within one day before the horizon: not kept
			}
		}
		p := planFor(since, until, g.wm)
		p.horizon, p.internal = g.horizon, g.internal
		st, err := overrideStats(g.ctx, g.tx, p, n.key, n.m)
		if err != nil {
			return OverrideStats{}, err
		}
		sum.add(st, 1)
	}
	return sum, nil
}

// governed counts the deliveries matching n during ts (when n is in force)
// that n governed: less those a more specific key in force took.
func (g *governor) governed(n *keyNode, ts []tspan) (OverrideStats, error) {
	st, err := g.count(n, ts)
	if err != nil {
		return st, err
	}
	for _, c := range n.children {
		sub, err := g.taken(c, ts)
		if err != nil {
			return st, err
		}
		st.add(sub, -1)
	}
	return st, nil
}

// taken counts the deliveries matching c during ts that c, or a key inside
// it, governed: all of c's while c was in force, and, while it was not,
// those its own sub-keys took.
func (g *governor) taken(c *keyNode, ts []tspan) (OverrideStats, error) {
	var sum OverrideStats
	var on []tspan
	for _, f := range spans(c.forced) {
		on = append(on, intersect(ts, f)...)
	}
	st, err := g.count(c, on)
	if err != nil {
		return sum, err
	}
	sum.add(st, 1)
	if off := subtract(ts, spans(c.forced)); len(off) > 0 {
		for _, d := range c.children {
			sub, err := g.taken(d, off)
			if err != nil {
				return sum, err
			}
			sum.add(sub, 1)
		}
	}
	return sum, nil
}
