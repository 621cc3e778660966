package metrics

import (
	"strings"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/policyd"
)

// ForcedBy returns a test of whether t's current snapshot requires TLS
// (policyd.RequiresTLS) for a delivery's destination, at the delivery's
// time (an override that had expired by then does not count). The
// destinations tried are the ones Postfix may have looked up: the
// recipient domain (with its .parent wildcards and the default), and the
// relay as a bracketed next-hop, "[mx.example.net]:587", for transport
// table routes.
func ForcedBy(t *policyd.Table) func(*delivery.Delivery) bool {
	return func(d *delivery.Delivery) bool {
		snap := t.Load()
		if snap == nil {
			return false
		}
		if d.Domain != "" {
			if r := snap.Lookup(d.Domain, d.Time); r.Found && policyd.RequiresTLS(r.Value) {
				return true
			}
		}
		if k := relayKey(d.Relay); k != "" {
			if r := snap.Lookup(k, d.Time); r.Found && r.Rule != policyd.RuleDefault && policyd.RequiresTLS(r.Value) {
				return true
			}
		}
		return false
	}
}

// relayKey turns a logged relay "host[addr]:port" into the bracketed
// next-hop "[host]:port"; "" when the relay has no such form.
func relayKey(relay string) string {
	i := strings.IndexByte(relay, '[')
	j := strings.LastIndex(relay, "]:")
	if i <= 0 || j < i {
		return ""
	}
	return "[" + relay[:i] + "]" + relay[j+1:]
}
