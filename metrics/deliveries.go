package metrics

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtls/mailtls/delivery"
)

// Label values of the delivery counters.
var (
	statuses   = delivery.Statuses
	outcomes   = delivery.Outcomes
	trusts     = delivery.Trusts
	protocols  = []string{"SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}
	otherValue = "other"
)

// Deliveries counts the deliveries this process stored. Internal hops
// (content filters, local LMTP) are left out, as in `mailtls report`.
type Deliveries struct {
	total, fallbacks, deferrals, toForced *prometheus.CounterVec
	tls                                   *prometheus.CounterVec

	// Without a domain label, every series is resolved once.
	byStatus  [len(statuses)][len(outcomes)]prometheus.Counter
	fallback  prometheus.Counter
	deferral  prometheus.Counter
	forcedAll prometheus.Counter

	forced atomic.Pointer[func(*delivery.Delivery) bool]

	maxDomains int
	mu         sync.RWMutex
	domains    map[string]bool // the domains with a label of their own
}

func newDeliveries(reg prometheus.Registerer, maxDomains int) *Deliveries {
	var dom []string
	if maxDomains > 0 {
		dom = []string{"domain"}
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help},
			append(slices.Clone(dom), labels...))
	}
	d := &Deliveries{
		total: counter("deliveries_total",
			"Delivery attempts stored, by status (sent, deferred, bounced, expired) and TLS (encrypted, plaintext, unknown: no TLS logging).",
			"status", "tls"),
		tls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "deliveries_tls_total",
			Help: "Encrypted sent deliveries stored, by trust level and TLS protocol (unknown: not logged; other: unrecognised)."},
			[]string{"trust", "protocol"}),
		fallbacks: counter("fallbacks_total",
			"Deliveries sent in plaintext after a failed TLS handshake to the same relay (opportunistic fallback)."),
		deferrals: counter("tls_deferrals_total",
			"Deferrals caused by TLS (handshake failure, TLS required but not offered, certificate not verified)."),
		toForced: counter("plaintext_to_forced_total",
			"Plaintext deliveries to a destination whose policy, when stored, required TLS (encrypt, dane-only, fingerprint, verify, secure): Postfix is not using the mailtls policy map."),
		maxDomains: maxDomains,
		domains:    map[string]bool{},
	}
	reg.MustRegister(d.total, d.tls, d.fallbacks, d.deferrals, d.toForced)
	if maxDomains == 0 {
		for i, st := range statuses {
			for _, o := range outcomes {
				d.byStatus[i][o] = d.total.WithLabelValues(string(st), o.String())
			}
		}
		d.fallback = d.fallbacks.WithLabelValues()
		d.deferral = d.deferrals.WithLabelValues()
		d.forcedAll = d.toForced.WithLabelValues()
	} else {
		// Series exist from the start, at 0, so that rates and alerts
		// see the first delivery.
		for _, st := range statuses {
			for _, o := range outcomes {
				d.total.WithLabelValues(otherValue, string(st), o.String())
			}
		}
		d.fallbacks.WithLabelValues(otherValue)
		d.deferrals.WithLabelValues(otherValue)
		d.toForced.WithLabelValues(otherValue)
	}
	return d
}

// SetDomains sets the domains that get a domain label of their own (at
// most the configured number; the first ones are kept). The series of
// domains that leave the set are deleted, so that the number of series
// stays bounded; their deliveries count as "other" from now on.
func (d *Deliveries) SetDomains(top []string) {
	if d.maxDomains == 0 {
		return
	}
	if len(top) > d.maxDomains {
		top = top[:d.maxDomains]
	}
	next := make(map[string]bool, len(top))
	for _, dom := range top {
		if dom != otherValue {
			next[dom] = true
		}
	}
	d.mu.Lock()
	prev := d.domains
	d.domains = next
	d.mu.Unlock()
	for dom := range prev {
		if !next[dom] {
			l := prometheus.Labels{"domain": dom}
			for _, v := range []*prometheus.CounterVec{d.total, d.fallbacks, d.deferrals, d.toForced} {
				v.DeletePartialMatch(l)
			}
		}
	}
}

func (d *Deliveries) domainLabel(dom string) string {
	d.mu.RLock()
	ok := d.domains[dom]
	d.mu.RUnlock()
	if ok {
		return dom
	}
	return otherValue
}

// oneOf returns v if it is in known, "unknown" if it is empty, else "other".
func oneOf[T ~string](v T, known []T) string {
	switch {
	case v == "":
		return "unknown"
	case slices.Contains(known, v):
		return string(v)
	}
	return otherValue
}

// SetForced sets the test of whether a delivery's destination was forced
// to TLS (see ForcedBy); without one, mailtls_plaintext_to_forced_total
// stays 0.
func (d *Deliveries) SetForced(f func(*delivery.Delivery) bool) { d.forced.Store(&f) }

func (d *Deliveries) isForced(x *delivery.Delivery) bool {
	f := d.forced.Load()
	return f != nil && *f != nil && (*f)(x)
}

// Add counts one stored delivery. Call it only after the delivery was
// committed, and only for deliveries that were added (not for those the
// store already had): store.CommitBatchEach does both.
func (d *Deliveries) Add(x *delivery.Delivery) {
	if x.Internal {
		return
	}
	si := slices.Index(statuses[:], x.Status)
	if si < 0 {
		return // the store accepts no other status
	}
	o := x.Outcome()
	sent, plain := statuses[si] == delivery.Sent, o == delivery.Plaintext
	forced := sent && plain && d.isForced(x)
	if sent && o == delivery.Encrypted {
		d.tls.WithLabelValues(oneOf(x.TLSTrust, trusts[:]), oneOf(x.TLSProtocol, protocols)).Inc()
	}
	if d.maxDomains == 0 {
		d.byStatus[si][o].Inc()
		if sent && x.Fallback {
			d.fallback.Inc()
		}
		if x.Status == delivery.Deferred && x.TLSFailure {
			d.deferral.Inc()
		}
		if sent && plain && forced {
			d.forcedAll.Inc()
		}
		return
	}
	dom := d.domainLabel(x.Domain)
	d.total.WithLabelValues(dom, string(x.Status), o.String()).Inc()
	if sent && x.Fallback {
		d.fallbacks.WithLabelValues(dom).Inc()
	}
	if x.Status == delivery.Deferred && x.TLSFailure {
		d.deferrals.WithLabelValues(dom).Inc()
	}
	if sent && plain && forced {
		d.toForced.WithLabelValues(dom).Inc()
	}
}
