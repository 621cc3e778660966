package policyd

import "strings"

// Publisher answers for a destination from what it publishes (DANE,
// MTA-STS; package published). The server consults it only when no
// override matches, before the default, so that an operator's override
// always wins. Publish must answer from memory; it may wait on I/O only
// for a destination it has never seen, and then at most a short budget.
// value must be a policy that ParsePolicy accepts unchanged.
type Publisher interface {
	Publish(key string) (Published, bool)
}

// Published is a Publisher's answer.
type Published struct {
	Value  string // the policy
	Source string // "dane" or "mta-sts"
	// TLSRPT holds the TLSRPT attributes of the policy, as
	// TLSRPTPolicy.Format returns them, or "".
	TLSRPT string
	// Unavailable: the answer cannot be known now (the publisher's cache
	// is still loading and its store failed). Unless the default is
	// stronger than any published answer, the servers answer TEMP rather
	// than a default that may be weaker.
	Unavailable bool
}

// RulePublished is Result.Rule for an answer from a Publisher; the
// publisher's source ("dane", "mta-sts") is in Result.Source.
const RulePublished = "published"

// RuleUnavailable is Result.Rule when the publisher could not tell
// (Published.Unavailable); the servers answer TEMP.
const RuleUnavailable = "unavailable"

type publisherBox struct{ p Publisher }

// SetPublisher makes lookups that match no override consult p (nil: stop).
func (t *Table) SetPublisher(p Publisher) {
	if p == nil {
		t.pub.Store(nil)
		return
	}
	t.pub.Store(&publisherBox{p})
}

// withPublished returns the publisher's answer for a lowercase ASCII key
// that matched no override, or r unchanged.
func (t *Table) withPublished(key []byte, r Result) Result {
	if !consultsPublisher(key, r) {
		return r
	}
	b := t.pub.Load()
	if b == nil {
		return r
	}
	p, ok := b.p.Publish(string(key))
	return applyPublished(r, p, ok)
}

// consultsPublisher tells whether the lookup r of key asks the publisher:
// it matched no override, and key is a recipient domain. Only a recipient
// domain has MX hosts and a policy: "[host]:port" and "domain:port"
// next-hops skip the MX lookup in Postfix.
func consultsPublisher(key []byte, r Result) bool {
	return (r.Rule == RuleDefault || r.Rule == RuleNotFound) && isDomainKey(key) && key[0] != '.'
}

// applyPublished is the answer when the publisher said p (ok: it had
// one) for a lookup that got r from the overrides and the default.
func applyPublished(r Result, p Published, ok bool) Result {
	if ok && p.Unavailable {
		// Only a default that not even dane-only may replace is sure.
		if notWeaker("dane-only", r) {
			return Result{Rule: RuleUnavailable}
		}
		return r
	}
	if !ok || p.Value == "" || !notWeaker(p.Value, r) {
		return r
	}
	return Result{Value: p.Value, Found: true, Rule: RulePublished, Source: p.Source, TLSRPT: p.TLSRPT, Expired: r.Expired}
}

// notWeaker reports whether published policy v may replace the default
// answer def without making any delivery use weaker TLS than def would
// ("never weaker"):
//
//   - a default of none or may gives way to any published answer;
//   - NOTFOUND (main.cf decides, and may say encrypt) and encrypt give way
//     only to answers that demand authenticated TLS of every MX host
//     (dane-only, secure): "dane" lets MX hosts without TLSA records fall
//     back to may;
//   - a stronger default (dane and up) is the operator's choice and stays.
func notWeaker(v string, def Result) bool {
	level, _, _ := strings.Cut(v, " ")
	mandatory := level == "dane-only" || level == "secure"
	if !def.Found {
		return mandatory
	}
	dl, _, _ := strings.Cut(def.Value, " ")
	switch dl {
	case "none", "may":
		return true
	case "encrypt":
		return mandatory
	}
	return false
}

// WithPublished applies the published answer p to r, the override lookup
// of the lowercase key, as the servers do: for `mailtls lookup`.
func WithPublished(key string, r Result, p Published) Result {
	if !consultsPublisher([]byte(key), r) {
		return r
	}
	return applyPublished(r, p, true)
}
