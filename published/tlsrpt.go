package published

import (
	"slices"
	"strings"

	"github.com/mailtls/mailtls/policyd"
)

// tlsrpt returns the TLSRPT attributes (RFC 8460 §4.4) of the answer of
// domain d, which st holds: for MTA-STS, policy_type sts, the policy's
// lines as policy_string and its mx patterns as mx_host_pattern. Nothing
// for DANE: Postfix builds the TLSA policy of a DANE report from its own
// lookups (as postfix-tlspol also sends attributes for STS only), so an
// attribute set there could only disagree with it. Nothing for no answer.
// An attribute value policyd refuses (a policy extension with a comma,
// say) gives no attributes at all rather than a partial set; the note
// says why.
func (st *state) tlsrpt(d string) (string, string) {
	if st.result.Source != SourceMTASTS || st.policy == nil {
		return "", ""
	}
	p := policyd.TLSRPTPolicy{Domain: d, Type: policyd.TLSRPTSTS}
	for _, l := range strings.Split(st.policy.p.String(), "\r\n") {
		if l != "" {
			p.Strings = append(p.Strings, l)
		}
	}
	p.MXHostPatterns = slices.Clone(st.policy.p.MX)
	s, err := p.Format()
	if err != nil {
		return "", "no TLSRPT attributes: " + err.Error()
	}
	return s, ""
}

// setTLSRPT fills st.result.TLSRPT from what st holds.
func (st *state) setTLSRPT(d string) {
	s, note := st.tlsrpt(d)
	st.result.TLSRPT = s
	if note != "" {
		st.result.Evidence.Notes = append(slices.Clip(st.result.Evidence.Notes), note)
	}
}
