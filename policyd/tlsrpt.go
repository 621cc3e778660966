package policyd

import (
	"errors"
	"fmt"
	"strings"
)

// TLSRPT policy attributes (RFC 8460 §4.4) that Postfix 3.10 and later read
// from an smtp_tls_policy_maps answer, so that its TLSRPT reports name the
// policy a published answer came from. Older Postfix rejects unknown
// attributes, so they are sent only on request: a socketmap query for the
// map name with TLSRPTSuffix, or Server.TLSRPT.
//
// Source of the syntax: the attribute names policy_type, policy_domain,
// policy_string and mx_host_pattern as mailtls issue #16 quotes them from
// Postfix's TLSRPT_README, and Postfix's "{ name = value }" form for an
// attribute value that holds whitespace (policy_string). The README itself
// was not at hand when this was written: check it before relying on the
// exact spelling.

// TLSRPTSuffix appended to the socketmap map name (tlspolicy-tlsrpt) asks
// for the TLSRPT attributes.
const TLSRPTSuffix = "-tlsrpt"

// ErrTLSRPT is wrapped by errors about TLSRPT attributes that may not reach
// Postfix.
var ErrTLSRPT = errors.New("policyd: invalid TLSRPT attribute")

// TLSRPT types (RFC 8460 §4.4 "policy-type").
const (
	TLSRPTSTS  = "sts"
	TLSRPTTLSA = "tlsa"
)

// maxTLSRPTItems bounds the policy_string and mx_host_pattern attributes.
const maxTLSRPTItems = 100

// TLSRPTPolicy is what a TLSRPT report says about the policy applied.
type TLSRPTPolicy struct {
	Type   string // TLSRPTSTS or TLSRPTTLSA
	Domain string // the policy domain (the recipient domain)
	// Strings are the policy_string values: the MTA-STS policy's lines, or
	// the TLSA records in presentation format.
	Strings []string
	// MXHostPatterns are the MTA-STS mx patterns (sts only).
	MXHostPatterns []string
}

// Format returns the attributes to append to a policy value, after
// checking every value: a value with whitespace, a comma or a brace
// (other than a policy_string's spaces, which the braces enclose) would
// change how Postfix splits the answer.
func (p TLSRPTPolicy) Format() (string, error) {
	if p.Type != TLSRPTSTS && p.Type != TLSRPTTLSA {
		return "", fmt.Errorf("%w: policy_type %q (want %s or %s)", ErrTLSRPT, p.Type, TLSRPTSTS, TLSRPTTLSA)
	}
	if !tlsrptName(p.Domain, false) {
		return "", fmt.Errorf("%w: policy_domain %q is not a domain name", ErrTLSRPT, p.Domain)
	}
	if len(p.Strings)+len(p.MXHostPatterns) > maxTLSRPTItems {
		return "", fmt.Errorf("%w: %d policy strings and mx patterns (at most %d)", ErrTLSRPT, len(p.Strings)+len(p.MXHostPatterns), maxTLSRPTItems)
	}
	if p.Type == TLSRPTTLSA && len(p.MXHostPatterns) > 0 {
		return "", fmt.Errorf("%w: mx_host_pattern is for sts policies only", ErrTLSRPT)
	}
	var b strings.Builder
	b.WriteString("policy_type=" + p.Type + " policy_domain=" + p.Domain)
	for _, m := range p.MXHostPatterns {
		if !tlsrptName(m, true) {
			return "", fmt.Errorf("%w: mx_host_pattern %q (want a host name, or *. and a domain)", ErrTLSRPT, m)
		}
		b.WriteString(" mx_host_pattern=" + m)
	}
	for _, s := range p.Strings {
		if err := tlsrptString(s); err != nil {
			return "", err
		}
		b.WriteString(" { policy_string = " + s + " }")
	}
	return b.String(), nil
}

// tlsrptName reports whether s is a lowercase ASCII domain name; with
// wildcard, "*." may come before it.
func tlsrptName(s string, wildcard bool) bool {
	if wildcard {
		s = strings.TrimPrefix(s, "*.")
	}
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// tlsrptString checks one policy_string value: printable ASCII, spaces
// inside only, no braces (they delimit the value) and no commas (Postfix
// splits attribute lists on them).
func tlsrptString(s string) error {
	if s == "" || len(s) > 1000 || s[0] == ' ' || s[len(s)-1] == ' ' {
		return fmt.Errorf("%w: policy_string %q (want 1 to 1000 bytes, no space at either end)", ErrTLSRPT, s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '{' || c == '}' || c == ',' {
			return fmt.Errorf("%w: policy_string %q has byte %#x (want printable ASCII without braces or commas)", ErrTLSRPT, s, c)
		}
	}
	return nil
}
