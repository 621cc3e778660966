package report

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/mtasts"
	"github.com/mailtls/mailtls/published"
	"github.com/mailtls/mailtls/store"
)

// PolicySource is what `report policies` reads: the published-policy
// cache and the recorded deliveries.
type PolicySource interface {
	LoadPublished(ctx context.Context, fn func(domain string, data []byte) error) error
	DeliveriesTo(ctx context.Context, domains []string, since, until time.Time, fn func(delivery.Delivery) error) error
}

var _ PolicySource = (*store.Store)(nil)

// Reasons a recorded delivery would have failed under a published policy.
const (
	FailMXMismatch  = "mx-mismatch"   // the relay matches no MTA-STS mx pattern
	FailUntrusted   = "untrusted"     // an Untrusted certificate where MTA-STS demands a valid one
	FailAnonymous   = "anonymous"     // an Anonymous (no certificate) session
	FailPlaintext   = "plaintext"     // sent in plaintext
	FailTLS         = "tls-failure"   // the attempt failed in TLS
	FailTLSAVerify  = "tlsa-mismatch" // DANE: certificate verification failed
	failNone        = ""              // would not have failed, or not known
	modeDANE        = "dane"
	policyCheckNote = "checked against the recorded deliveries to the destination (relay other than none, internal hops left out): sent ones, and attempts that failed in TLS"
)

// PolicyProblem is one relay host and one reason.
type PolicyProblem struct {
	MX      string `json:"mx"`
	Reason  string `json:"reason"`
	Count   int64  `json:"count"`
	Message string `json:"message"`
}

// PolicyCheck is one destination's published policy checked against its
// recorded deliveries.
type PolicyCheck struct {
	Domain string `json:"domain"`
	Source string `json:"source"` // dane | mta-sts
	// Mode is enforce or testing (MTA-STS), or dane.
	Mode string `json:"mode"`
	// Policy is the answer; for testing, what enforce would answer.
	Policy   string `json:"policy"`
	PolicyID string `json:"policy_id,omitempty"`
	// Deliveries are the recorded deliveries checked; WouldFail those
	// that would have been deferred under the policy.
	Deliveries int64           `json:"deliveries"`
	WouldFail  int64           `json:"would_fail"`
	Problems   []PolicyProblem `json:"problems"`
}

// Policies is `report policies --format json`.
type Policies struct {
	Rows []PolicyCheck `json:"rows"`
	// Warnings are the problems of enforce and DANE policies, one line
	// each: mail routed there will be deferred.
	Warnings []string `json:"warnings"`
	Note     string   `json:"note"`
}

// LoadPolicies checks every cached DANE or MTA-STS (enforce or testing)
// answer against the deliveries recorded in w to its destination
// (w.Domain is ignored). A delivery would have failed:
//
//   - under MTA-STS (RFC 8461 §4), when its relay host matches none of the
//     policy's mx patterns (mtasts.Policy.MatchMX), or its certificate was
//     logged Untrusted or Anonymous, or it went in plaintext, or the
//     attempt failed in TLS;
//   - under DANE (RFC 7672), at an MX host with usable TLSA records, when
//     certificate verification failed (a TLS failure logged with an
//     Untrusted certificate or "not verified"), or it went in plaintext.
//
// Deliveries whose TLS state was not logged are checked for the mx
// pattern only. Cost: one read of the window's time index, and of the
// rows to the cached destinations (store.DeliveriesTo); entries that no
// longer decode are skipped.
func LoadPolicies(ctx context.Context, src PolicySource, w store.Window) (Policies, error) {
	out := Policies{Rows: []PolicyCheck{}, Warnings: []string{}, Note: policyCheckNote}
	type target struct {
		check  *PolicyCheck
		sts    *mtasts.Policy
		dane   map[string]bool // MX hosts with usable TLSA records
		counts map[[2]string]int64
	}
	targets := map[string]*target{}
	err := src.LoadPublished(ctx, func(domain string, data []byte) error {
		res, err := published.Decode(domain, data)
		if err != nil {
			return nil // an unreadable entry: the daemon skips it too
		}
		t := &target{counts: map[[2]string]int64{}}
		switch {
		case res.Source == published.SourceDANE:
			t.check = &PolicyCheck{Domain: domain, Source: string(res.Source), Mode: modeDANE, Policy: res.Policy}
			t.dane = map[string]bool{}
			for _, mx := range res.Evidence.MX {
				if mx.Usable {
					t.dane[strings.ToLower(strings.TrimSuffix(mx.Host, "."))] = true
				}
			}
		case res.Evidence.MTASTS != nil && (res.Evidence.MTASTS.Mode == string(mtasts.ModeEnforce) || res.Evidence.MTASTS.Mode == string(mtasts.ModeTesting)):
			ev := res.Evidence.MTASTS
			if ev.Mode == string(mtasts.ModeEnforce) && res.Source != published.SourceMTASTS {
				return nil // expired or overruled: not in force
			}
			t.check = &PolicyCheck{Domain: domain, Source: "mta-sts", Mode: ev.Mode, Policy: ev.Answer, PolicyID: ev.ID}
			t.sts = &mtasts.Policy{Mode: mtasts.Mode(ev.Mode), MX: ev.MX}
		default:
			return nil
		}
		targets[strings.ToLower(domain)] = t
		return nil
	})
	if err != nil || len(targets) == 0 {
		return out, err
	}
	domains := make([]string, 0, len(targets))
	for d := range targets {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	err = src.DeliveriesTo(ctx, domains, w.Since, w.Until, func(d delivery.Delivery) error {
		t := targets[strings.ToLower(d.Domain)]
		if t == nil || d.Internal || strings.EqualFold(d.Relay, "none") || (d.Status != delivery.Sent && !d.TLSFailure) {
			return nil
		}
		host := delivery.RelayHost(d.Relay)
		t.check.Deliveries++
		var why string
		if t.sts != nil {
			why = stsFailure(t.sts, host, d)
		} else {
			why = daneFailure(t.dane, host, d)
		}
		if why != failNone {
			t.check.WouldFail++
			t.counts[[2]string{host, why}]++
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	for _, t := range targets {
		c := t.check
		c.Problems = []PolicyProblem{}
		for k, n := range t.counts {
			c.Problems = append(c.Problems, PolicyProblem{MX: k[0], Reason: k[1], Count: n})
		}
		sort.Slice(c.Problems, func(i, j int) bool {
			a, b := c.Problems[i], c.Problems[j]
			if a.Count != b.Count {
				return a.Count > b.Count
			}
			if a.MX != b.MX {
				return a.MX < b.MX
			}
			return a.Reason < b.Reason
		})
		for i := range c.Problems {
			c.Problems[i].Message = problemMessage(c, c.Problems[i])
		}
		out.Rows = append(out.Rows, *c)
	}
	sort.Slice(out.Rows, func(i, j int) bool { return out.Rows[i].Domain < out.Rows[j].Domain })
	for _, c := range out.Rows {
		if c.Mode == string(mtasts.ModeTesting) {
			continue
		}
		for _, p := range c.Problems {
			out.Warnings = append(out.Warnings, p.Message)
		}
	}
	return out, nil
}

func stsFailure(p *mtasts.Policy, host string, d delivery.Delivery) string {
	switch {
	case !p.MatchMX(host):
		return FailMXMismatch
	case d.Status != delivery.Sent:
		return FailTLS
	case d.TLS == nil:
		return failNone
	case !*d.TLS:
		return FailPlaintext
	}
	switch strings.ToLower(string(d.TLSTrust)) {
	case "untrusted":
		return FailUntrusted
	case "anonymous":
		return FailAnonymous
	}
	return failNone
}

func daneFailure(usable map[string]bool, host string, d delivery.Delivery) string {
	if !usable[host] {
		return failNone // no TLSA records there: dane falls back to may
	}
	if d.Status != delivery.Sent {
		if strings.EqualFold(string(d.TLSTrust), string(delivery.Untrusted)) || strings.Contains(strings.ToLower(d.Reason), "not verified") {
			return FailTLSAVerify
		}
		return FailTLS
	}
	if d.TLS != nil && !*d.TLS {
		return FailPlaintext
	}
	return failNone
}

func problemMessage(c *PolicyCheck, p PolicyProblem) string {
	what := map[string]string{
		FailMXMismatch: "went to %[1]s, which matches none of the policy's mx patterns",
		FailUntrusted:  "%[1]s presented an untrusted certificate",
		FailAnonymous:  "%[1]s presented no certificate (anonymous TLS)",
		FailPlaintext:  "%[1]s took mail in plaintext",
		FailTLS:        "%[1]s failed the TLS handshake",
		FailTLSAVerify: "%[1]s failed certificate verification against its TLSA records",
	}[p.Reason]
	what = fmt.Sprintf(what, p.MX)
	if c.Mode == string(mtasts.ModeTesting) {
		return fmt.Sprintf("%s publishes MTA-STS testing: enforce would have deferred %d of %d recorded deliveries, where %s",
			c.Domain, p.Count, c.Deliveries, strings.TrimPrefix(what, "went to "))
	}
	pub := "MTA-STS enforce"
	if c.Mode == modeDANE {
		pub = "DANE (" + c.Policy + ")"
	}
	if p.Reason == FailMXMismatch {
		return fmt.Sprintf("%s publishes %s, but %d of %d deliveries %s: mail routed there will be deferred",
			c.Domain, pub, p.Count, c.Deliveries, what)
	}
	return fmt.Sprintf("%s publishes %s, but %s in %d of %d deliveries: mail routed there will be deferred",
		c.Domain, pub, what, p.Count, c.Deliveries)
}
