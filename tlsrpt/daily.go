package tlsrpt

import (
	"maps"
	"slices"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// Identity is who the reports say they are from.
type Identity struct {
	Organization string // tlsrpt-org
	Contact      string // tlsrpt-contact
	SendingMTAIP string // tlsrpt-sending-ip, or ""
}

// Daily gathers what the reports of one UTC day are made of, as the
// command reads it from the store: the day's deliveries, the cached
// policy of each domain that has some, and the answer log of each. It
// reads nothing itself.
type Daily struct {
	id         Identity
	start, end time.Time
	deliveries map[string][]delivery.Delivery
	cached     map[string]cachedPolicy
	changes    map[string][]PolicyPeriod
	logged     map[string]bool
}

type cachedPolicy struct {
	p Policy
	f *PolicyFetchFailure
}

// NewDaily collects the reports of the UTC day holding day.
func NewDaily(id Identity, day time.Time) *Daily {
	start, end := Day(day)
	return &Daily{id: id, start: start, end: end, deliveries: map[string][]delivery.Delivery{},
		cached: map[string]cachedPolicy{}, changes: map[string][]PolicyPeriod{}, logged: map[string]bool{}}
}

// Span is the day, as [start, end).
func (d *Daily) Span() (start, end time.Time) { return d.start, d.end }

// AddDelivery adds one of the day's deliveries, in time order; internal
// hops are not TLS sessions of a policy domain and are left out.
func (d *Daily) AddDelivery(x delivery.Delivery) error {
	if !x.Internal {
		d.deliveries[x.Domain] = append(d.deliveries[x.Domain], x)
	}
	return nil
}

// Wants tells whether domain has deliveries that day.
func (d *Daily) Wants(domain string) bool {
	_, ok := d.deliveries[domain]
	return ok
}

// Domains are the domains with deliveries that day, in order.
func (d *Daily) Domains() []string { return slices.Sorted(maps.Keys(d.deliveries)) }

// SetCached sets the policy domain has in the published-policy cache now:
// the policy of the whole day when its answer log is empty.
func (d *Daily) SetCached(domain string, p Policy, ff *PolicyFetchFailure) {
	d.cached[domain] = cachedPolicy{p, ff}
}

// AddChange adds a change of domain's published answer from the answer
// log, oldest first: the policy in force from at on.
func (d *Daily) AddChange(domain string, at time.Time, p Policy) {
	d.logged[domain] = true
	if at.Before(d.end) {
		d.changes[domain] = append(d.changes[domain], PolicyPeriod{From: at, Policy: p})
	}
}

// Reports are the day's reports, in domain order: one for each domain
// with at least one TLS session. The policies of each are the answers in
// force that day in its answer log (InForce); a domain without any logged
// answer (--sources override, or a database older than the answer log)
// has its cached policy (no-policy-found without one).
func (d *Daily) Reports() []Report {
	var out []Report
	for _, dom := range d.Domains() {
		c, ok := d.cached[dom]
		if !ok {
			c.p = Policy{Type: PolicyNoPolicyFound}
		}
		var periods []PolicyPeriod
		if d.logged[dom] {
			periods = InForce(d.start, d.changes[dom])
		}
		r := Build(Input{Organization: d.id.Organization, Contact: d.id.Contact, SendingMTAIP: d.id.SendingMTAIP,
			Domain: dom, Day: d.start, Periods: periods, Policy: c.p, FetchFailure: c.f, Deliveries: d.deliveries[dom]})
		if s := r.Totals(); s.Successful+s.Failed > 0 {
			out = append(out, r)
		}
	}
	return out
}

// MaxDelay bounds the random delay after 00:00 UTC of the daily send
// (RFC 8460 §5.1: spread the sending over the day's first hours).
const MaxDelay = 4 * time.Hour

// NextRun is when the daily send next runs: delay after the next 00:00
// UTC after now; or, at start-up (first), delay after today's 00:00 when
// that is still ahead, else within delay from now (a restart later in the
// day still sends yesterday's reports, and never twice: the store records
// each send).
func NextRun(now time.Time, delay time.Duration, first bool) time.Time {
	today, tomorrow := Day(now)
	if first {
		if at := today.Add(delay); at.After(now) {
			return at
		}
		return now.Add(delay % time.Hour)
	}
	return tomorrow.Add(delay)
}

// SendDays are the days a send at now handles: day, then each day of
// failed (the days of sends that failed, as YYYY-MM-DD) not yet
// handled, in their order. Which of them may still be retried is
// RetryFor's to say (see Deliverer.Deliver).
func SendDays(day time.Time, failed []string) []time.Time {
	days := []time.Time{day}
	for _, s := range failed {
		d, err := time.Parse("2006-01-02", s)
		if err == nil && !slices.ContainsFunc(days, d.Equal) {
			days = append(days, d)
		}
	}
	return days
}
