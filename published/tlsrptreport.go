package published

import (
	"strings"
	"time"

	"github.com/mailtls/mailtls/mtasts"
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
// The entry is the one cached now: the store keeps no history of
// policies, so a report for an earlier day names the policy as it is
// cached at the time of the report.
func TLSRPTPolicy(domain string, data []byte) (tlsrpt.Policy, *tlsrpt.PolicyFetchFailure, error) {
	st, err := decodeState(domain, data, nil)
	if err != nil {
		return tlsrpt.Policy{}, nil, err
	}
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
	return pol, ff, nil
}
