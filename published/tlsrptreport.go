package published

import (
	"strings"
	"time"

	"github.com/mailtls/mailtls/mtasts"
	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/tlsrpt"
)

// STSFetchFailure is the last failed MTA-STS policy fetch, classified for
// TLSRPT (RFC 8460 §4.3.2.2).
type STSFetchFailure struct {
	Time       time.Time `json:"time"`
	ResultType string    `json:"result_type"`
	Error      string    `json:"error"`
}

// TLSRPTPolicy decodes a stored cache entry (Store.LoadPublished) into the
// policy an RFC 8460 report names (§4.3), and the last failed policy
// fetch, if any:
//   - a DANE answer is a tlsa policy: the usable TLSA records of the MX
//     hosts, and those hosts;
//   - an MTA-STS policy of mode enforce or testing (the cache keeps a
//     testing one) is an sts policy: its lines and its mx patterns;
//   - anything else is no-policy-found.
//
// The entry is the one cached now; AnswerPolicy names the policy of an
// earlier answer.
func TLSRPTPolicy(domain string, data []byte) (tlsrpt.Policy, *tlsrpt.PolicyFetchFailure, error) {
	st, err := decodeState(domain, data, nil)
	if err != nil {
		return tlsrpt.Policy{}, nil, err
	}
	pol, ff := tlsrptPolicyOf(domain, st)
	return pol, ff, nil
}

// AnswerPolicy is the RFC 8460 policy of one answer of the answer log
// (store.AnswerChange: source, the Postfix answer, the MTA-STS policy id),
// given the domain's cache entry now (cached; nil without one). When the
// answer is the cached one (same source, answer and policy id), it is the
// cached policy, as TLSRPTPolicy gives it. An earlier answer keeps only
// what the log holds: a dane answer is a tlsa policy without its records,
// an mta-sts answer (or a testing policy: source none with a policy id;
// the log cannot tell it from a policy of mode none) an sts policy whose
// mx-host are the answer's match= patterns (for enforce) and whose
// policy-string is unknown, so left out; anything else is
// no-policy-found.
func AnswerPolicy(domain, source, answer, policyID string, cached []byte) tlsrpt.Policy {
	if cached != nil {
		if st, err := decodeState(domain, cached, nil); err == nil && string(st.result.Source) == source &&
			normalAnswer(st.result.Policy) == normalAnswer(answer) && st.policyID() == policyID {
			pol, _ := tlsrptPolicyOf(domain, st)
			return pol
		}
	}
	pol := tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, Domain: domain}
	switch {
	case source == string(SourceDANE):
		pol.Type = tlsrpt.PolicyTLSA
	case source == string(SourceMTASTS) || policyID != "":
		pol.Type = tlsrpt.PolicySTS
		if p, err := policyd.ParsePolicy(answer); err == nil {
			for _, a := range p.Attrs {
				if a.Name != "match" {
					continue
				}
				for _, m := range strings.Split(a.Value, ":") {
					if rest, ok := strings.CutPrefix(m, "."); ok {
						m = "*." + rest // mtasts.Policy.PostfixMatch, reversed
					}
					if m != "" {
						pol.MXHost = append(pol.MXHost, m)
					}
				}
			}
		}
	}
	return pol
}

// normalAnswer is a Postfix answer as decodeState keeps it.
func normalAnswer(a string) string {
	if p, err := policyd.ParsePolicy(a); err == nil {
		return p.String()
	}
	return a
}

// policyID is the id of the cached MTA-STS policy, or "".
func (st *state) policyID() string {
	if st.policy == nil {
		return ""
	}
	return st.policy.id
}

func tlsrptPolicyOf(domain string, st *state) (tlsrpt.Policy, *tlsrpt.PolicyFetchFailure) {
	pol := tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, Domain: domain}
	ev := st.result.Evidence
	switch {
	case st.result.Source == SourceDANE:
		pol.Type = tlsrpt.PolicyTLSA
		for _, m := range ev.MX {
			if !m.Usable {
				continue
			}
			pol.MXHost = append(pol.MXHost, m.Host)
			pol.String = append(pol.String, m.TLSA...)
		}
	case st.policy != nil && st.policy.p.Mode != mtasts.ModeNone:
		pol.Type = tlsrpt.PolicySTS
		pol.String = strings.Split(strings.TrimSuffix(st.policy.p.String(), "\r\n"), "\r\n")
		pol.MXHost = append(pol.MXHost, st.policy.p.MX...)
	}
	var ff *tlsrpt.PolicyFetchFailure
	if f := ev.STSFetchFailure; f != nil {
		ff = &tlsrpt.PolicyFetchFailure{Time: f.Time, ResultType: tlsrpt.ResultType(f.ResultType), Error: f.Error}
	}
	return pol, ff
}
