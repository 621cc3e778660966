// Package report shapes TLS coverage reports: the window syntax shared by
// the command line and the HTTP listener, the JSON views of
// `mailtls report --format json` (the contract in ARCHITECTURE.md), and the
// self-contained HTML page built from the same views.
//
// Both outputs go through Load and the view types here, so a number on the
// HTML page is by construction the number in the JSON for the same window.
package report

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/mailtls/mailtls/store"
)

// Source is what reports read from the store.
type Source interface {
	Summary(ctx context.Context, w store.Window) (store.Summary, error)
	ReportBy(ctx context.Context, w store.Window, by string, top int) ([]store.Row, error)
	Downgrades(ctx context.Context, w store.Window) ([]store.Downgrade, error)
	OverridesInForce(ctx context.Context, w store.Window, now time.Time) ([]store.OverrideInForce, error)
	ForcedPlaintextIn(ctx context.Context, w store.Window) ([]store.ForcedPlaintext, error)
	Horizon(ctx context.Context) (time.Time, error)
}

var _ Source = (*store.Store)(nil)

// Summary is the `report --format json` summary contract (ARCHITECTURE.md):
// keep the field names exact.
type Summary struct {
	Deliveries          int64            `json:"deliveries"`
	Encrypted           int64            `json:"encrypted"`
	Plaintext           int64            `json:"plaintext"`
	Unknown             int64            `json:"unknown"`
	Fallback            int64            `json:"fallback"`
	Coverage            json.Number      `json:"coverage"`
	ByTrust             map[string]int64 `json:"by_trust"`
	ByProtocol          map[string]int64 `json:"by_protocol"`
	Deferred            int64            `json:"deferred"`
	TLSDeferred         int64            `json:"tls_deferred"`
	Bounced             int64            `json:"bounced"`
	Domains             int64            `json:"domains"`
	DomainsAllTLS       int64            `json:"domains_all_tls"`
	DomainsAnyPlaintext int64            `json:"domains_any_plaintext"`
	Internal            int64            `json:"internal"` // internal hops in the window, left out above unless included
}

// NewSummary is the JSON view of s.
func NewSummary(s store.Summary) Summary {
	j := Summary{
		Deliveries: s.Deliveries, Encrypted: s.Encrypted, Plaintext: s.Plaintext, Unknown: s.Unknown,
		Fallback: s.Fallback, Coverage: Coverage4(s.Coverage), ByTrust: s.ByTrust, ByProtocol: s.ByProtocol,
		Deferred: s.Deferred, TLSDeferred: s.TLSDeferred, Bounced: s.Bounced, Domains: s.Domains,
		DomainsAllTLS: s.DomainsAllTLS, DomainsAnyPlaintext: s.DomainsAnyPlaintext, Internal: s.Internal,
	}
	if j.ByTrust == nil {
		j.ByTrust = map[string]int64{}
	}
	if j.ByProtocol == nil {
		j.ByProtocol = map[string]int64{}
	}
	return j
}

// Coverage4 renders a coverage ratio with 4 decimals, as the contract says.
func Coverage4(f float64) json.Number { return json.Number(fmt.Sprintf("%.4f", f)) }

// Row is one row of `report --by KEY --format json`.
type Row struct {
	Key        string      `json:"key"`
	Deliveries int64       `json:"deliveries"`
	Encrypted  int64       `json:"encrypted"`
	Plaintext  int64       `json:"plaintext"`
	Coverage   json.Number `json:"coverage"`
}

// Unknown is the number of sent deliveries whose TLS state is not known.
func (r Row) Unknown() int64 { return r.Deliveries - r.Encrypted - r.Plaintext }

// Rows is the `report --by KEY --format json` document.
type Rows struct {
	Rows []Row `json:"rows"`
}

// NewRows is the JSON view of rows.
func NewRows(rows []store.Row) Rows {
	out := Rows{Rows: make([]Row, 0, len(rows))}
	for _, r := range rows {
		out.Rows = append(out.Rows, Row{Key: r.Key, Deliveries: r.Deliveries, Encrypted: r.Encrypted, Plaintext: r.Plaintext, Coverage: Coverage4(r.Coverage)})
	}
	return out
}

// SortOrders lists the orders SortRows accepts.
var SortOrders = []string{"sent", "plaintext", "coverage", "key"}

// SortRows orders report rows: "sent" keeps the store's order (most sent
// first), "plaintext" puts the most plaintext first, "coverage" the lowest
// coverage first (rows with no known TLS state last), "key" sorts by key;
// ties keep the store's order.
func SortRows(rows []store.Row, order string) {
	switch order {
	case "plaintext":
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].Plaintext > rows[j].Plaintext })
	case "coverage":
		known := func(r store.Row) bool { return r.Encrypted+r.Plaintext > 0 }
		sort.SliceStable(rows, func(i, j int) bool {
			if known(rows[i]) != known(rows[j]) {
				return known(rows[i])
			}
			return rows[i].Coverage < rows[j].Coverage
		})
	case "key":
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].Key < rows[j].Key })
	}
}

// LoadRows is `report --by by --sort order --top top`: the store trims by
// sent, so other orders are trimmed here, after sorting.
func LoadRows(ctx context.Context, src Source, w store.Window, by, order string, top int) ([]store.Row, error) {
	storeTop := top
	if order != "sent" {
		storeTop = 0
	}
	rows, err := src.ReportBy(ctx, w, by, storeTop)
	if err != nil {
		return nil, err
	}
	SortRows(rows, order)
	if top > 0 && len(rows) > top {
		rows = rows[:top]
	}
	return rows, nil
}

// Downgrade is one row of `report downgrades --format json`.
type Downgrade struct {
	Domain          string `json:"domain"`
	FirstSeen       string `json:"first_seen"`
	LastSeen        string `json:"last_seen"`
	Count           int64  `json:"count"`
	LastTLSAt       string `json:"last_tls_at"`
	LastTLSTrust    string `json:"last_tls_trust"`
	LastTLSProtocol string `json:"last_tls_protocol"`
	LastTLSCipher   string `json:"last_tls_cipher"`
}

// Downgrades is the `report downgrades --format json` document.
type Downgrades struct {
	Downgrades []Downgrade `json:"downgrades"`
}

// NewDowngrades is the JSON view of ds.
func NewDowngrades(ds []store.Downgrade) Downgrades {
	out := Downgrades{Downgrades: make([]Downgrade, 0, len(ds))}
	for _, d := range ds {
		out.Downgrades = append(out.Downgrades, Downgrade{d.Domain, RFC3339(d.FirstSeen), RFC3339(d.LastSeen), d.Count,
			RFC3339(d.LastTLSAt), d.LastTLSTrust, d.LastTLSProtocol, d.LastTLSCipher})
	}
	return out
}

// RFC3339 formats t in UTC, or "" for the zero time.
func RFC3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// OverrideRow is one row of `report overrides --format json`: the traffic
// under an override in the window, counted only while it was in force
// (store.OverridesInForce).
type OverrideRow struct {
	Key          string `json:"key"`
	Policy       string `json:"policy"`
	InForceSince string `json:"in_force_since"` // "" when it has expired
	Sent         int64  `json:"sent"`
	Encrypted    int64  `json:"encrypted"`
	Plaintext    int64  `json:"plaintext"`
	Deferred     int64  `json:"deferred"`
	TLSDeferred  int64  `json:"tls_deferred"`
	Bounced      int64  `json:"bounced"`
}

// LoadOverrides counts the deliveries under each override in w while it
// was in force, up to now.
func LoadOverrides(ctx context.Context, src Source, w store.Window, now time.Time) ([]OverrideRow, error) {
	rows, err := src.OverridesInForce(ctx, w, now)
	if err != nil {
		return nil, err
	}
	out := make([]OverrideRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, OverrideRow{r.Key, r.Policy, RFC3339(r.InForceSince), r.Sent, r.Encrypted, r.Plaintext, r.Deferred, r.TLSDeferred, r.Bounced})
	}
	return out, nil
}

// TopPlaintext is how many destinations the page lists under "who got
// plaintext".
const TopPlaintext = 10

// Data is everything the HTML page shows, each part in its JSON view:
// Summary is `report --format json`, Days `--by day`, Plaintext
// `--by domain --sort plaintext --top 10` (rows with plaintext only),
// Downgrades `report downgrades`, Overrides `report overrides`, Policies
// `report policies`.
type Data struct {
	Window store.Window
	// PrunedBefore is the pruning horizon when it narrowed the window
	// asked for to whole days (see store.FitWindow), else zero.
	PrunedBefore time.Time
	Summary      Summary
	Days         []Row
	Plaintext    []Row
	Downgrades   []Downgrade
	Overrides    []OverrideRow
	// Warnings is plaintext sent to destinations while they were forced
	// (the warnings of `report overrides --format json`).
	Warnings []Warning
	// Policies is `report policies --format json` for the window, when
	// the source keeps published answers and the window has no domain
	// filter.
	Policies *Policies
}

// Load reads the page's data for w, narrowed as the store answers it
// after pruning.
func Load(ctx context.Context, src Source, w store.Window) (*Data, error) {
	d := &Data{Window: w}
	h, err := src.Horizon(ctx)
	if err != nil {
		return nil, err
	}
	if fw, moved := Fitted(w, h, false); moved {
		w = fw
		d.Window, d.PrunedBefore = w, h
	}
	s, err := src.Summary(ctx, w)
	if err != nil {
		return nil, err
	}
	d.Summary = NewSummary(s)
	days, err := LoadRows(ctx, src, w, "day", "sent", 0)
	if err != nil {
		return nil, err
	}
	d.Days = NewRows(days).Rows
	plain, err := LoadRows(ctx, src, w, "domain", "plaintext", TopPlaintext)
	if err != nil {
		return nil, err
	}
	for _, r := range NewRows(plain).Rows {
		if r.Plaintext > 0 {
			d.Plaintext = append(d.Plaintext, r)
		}
	}
	ds, err := src.Downgrades(ctx, w)
	if err != nil {
		return nil, err
	}
	d.Downgrades = NewDowngrades(ds).Downgrades
	now := w.Until
	if now.IsZero() {
		now = time.Now()
	}
	if d.Overrides, err = LoadOverrides(ctx, src, w, now); err != nil {
		return nil, err
	}
	ws, err := src.ForcedPlaintextIn(ctx, w)
	if err != nil {
		return nil, err
	}
	d.Warnings = NewWarnings(ws)
	if ps, ok := src.(PolicySource); ok && w.Domain == "" {
		p, err := LoadPolicies(ctx, ps, w)
		if err != nil {
			return nil, err
		}
		d.Policies = &p
	}
	return d, nil
}

// Overrides is the `report overrides --format json` document.
type Overrides struct {
	Rows     []OverrideRow `json:"rows"`
	Warnings []Warning     `json:"warnings"`
}

// Warning is plaintext sent to a destination while an override forced it
// to a mandatory level (store.ForcedPlaintext): Postfix is not asking
// mailtls for it. It is one warning of `report overrides` and `status`.
type Warning struct {
	Key            string `json:"key"`
	Policy         string `json:"policy"`
	Plaintext      int64  `json:"plaintext"`
	FirstTime      string `json:"first_time"` // "" when its row was pruned
	FirstQueueID   string `json:"first_queue_id"`
	FirstRecipient string `json:"first_recipient"`
	FirstRelay     string `json:"first_relay"`
	Message        string `json:"message"`
}

// NewWarnings is the JSON view of ws.
func NewWarnings(ws []store.ForcedPlaintext) []Warning {
	out := make([]Warning, 0, len(ws))
	for _, w := range ws {
		j := Warning{Key: w.Key, Policy: w.Policy, Plaintext: w.Count, Message: WarningMessage(w)}
		if w.HaveFirst {
			j.FirstTime, j.FirstQueueID, j.FirstRecipient, j.FirstRelay = RFC3339(w.First.Time), w.First.QueueID, w.First.Recipient, w.First.Relay
		}
		out = append(out, j)
	}
	return out
}

// WarningMessage is the one-line warning for w. It holds log data as
// logged: escape it before it reaches a terminal.
func WarningMessage(w store.ForcedPlaintext) string {
	n := Num(w.Count) + " deliveries"
	if w.Count == 1 {
		n = "1 delivery"
	}
	msg := fmt.Sprintf("%s: %s sent in plaintext while forced to %q: Postfix is not asking mailtls for it "+
		"(smtp_tls_policy_maps missing, a transport that bypasses it, or mail sent by another host)",
		w.Key, n, w.Policy)
	if w.HaveFirst {
		msg += fmt.Sprintf("; first: %s queue id %s to %s via %s", RFC3339(w.First.Time), w.First.QueueID, w.First.Recipient, w.First.Relay)
	}
	return msg
}
