package mtasts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mailtls/mailtls/dnsname"
	"github.com/mailtls/mailtls/internal/clip"
)

// Sentinel errors of the MTA-STS parsers and fetcher.
var (
	ErrRecordSyntax = errors.New("mtasts: invalid MTA-STS TXT record")
	ErrPolicySyntax = errors.New("mtasts: invalid MTA-STS policy")
	ErrPolicyFetch  = errors.New("mtasts: MTA-STS policy fetch failed")
)

// Mode is the MTA-STS policy mode (RFC 8461 §5).
type Mode string

// MTA-STS modes.
const (
	ModeEnforce Mode = "enforce"
	ModeTesting Mode = "testing"
	ModeNone    Mode = "none"
)

// MaxPolicyAge is the largest max_age a policy may carry (RFC 8461 §3.2):
// about one year, in seconds.
const MaxPolicyAge = 31557600

// MaxPolicySize caps the policy body we read. RFC 8461 §3.3 says senders
// may limit it; 64 KiB is what the RFC suggests.
const MaxPolicySize = 64 << 10

// Extension is an unknown key/value pair of a record or policy. Unknown
// keys are ignored for the decision (RFC 8461 §3.1, §3.2) but reported.
type Extension struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Record is a parsed _mta-sts TXT record (RFC 8461 §3.1).
type Record struct {
	Version    string      `json:"version"`
	ID         string      `json:"id"`
	Extensions []Extension `json:"extensions,omitempty"`
}

// Policy is a parsed MTA-STS policy (RFC 8461 §3.2).
type Policy struct {
	Version string `json:"version"`
	Mode    Mode   `json:"mode"`
	// MX holds the patterns in lower case, as published: "mx1.example.com"
	// or "*.example.net".
	MX         []string    `json:"mx"`
	MaxAge     int         `json:"max_age"`
	Extensions []Extension `json:"extensions,omitempty"`
}

// isAlnum reports whether c is an ASCII letter or digit.
func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// validExtName checks sts-ext-name / sts-policy-ext-name / tlsrpt-ext-name:
// (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".").
func validExtName(s string) bool {
	if s == "" || len(s) > 32 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validTXTExtValue checks sts-ext-value / tlsrpt-ext-value:
// 1*(%x21-3A / %x3C / %x3E-7E), printable ASCII except "=" and ";".
func validTXTExtValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '=' || c == ';' {
			return false
		}
	}
	return true
}

// splitTXTFields splits a "k=v; k=v;" record at field-delim = *WSP ";" *WSP.
// One trailing delimiter is allowed; empty fields elsewhere are not.
func splitTXTFields(s string) ([]string, error) {
	parts := strings.Split(s, ";")
	if len(parts) > 1 && strings.Trim(parts[len(parts)-1], " \t") == "" {
		parts = parts[:len(parts)-1]
	}
	for i, p := range parts {
		p = strings.Trim(p, " \t")
		if p == "" {
			return nil, errors.New("empty field (two \";\" in a row, or a leading \";\")")
		}
		parts[i] = p
	}
	return parts, nil
}

// ParseRecord parses the TXT record at _mta-sts.<domain>, such as
// "v=STSv1; id=20160831085700Z;" (RFC 8461 §3.1). The record must start
// with v=STSv1 and carry exactly one id of 1 to 32 letters and digits;
// other well-formed fields are kept as extensions.
func ParseRecord(txt string) (Record, error) {
	bad := func(format string, args ...any) (Record, error) {
		return Record{}, fmt.Errorf("%w: %s (record %q; want e.g. \"v=STSv1; id=20240101T000000;\")",
			ErrRecordSyntax, fmt.Sprintf(format, args...), clip.Text(txt, 100))
	}
	rec := Record{Version: "STSv1"}
	ext, err := ParseTagRecord(txt, "STSv1", func(k, v string) (bool, error) {
		if k != "id" {
			return false, nil
		}
		if len(v) < 1 || len(v) > 32 || strings.IndexFunc(v, func(r rune) bool { return r > 0x7f || !isAlnum(byte(r)) }) >= 0 {
			return true, fmt.Errorf("id %q must be 1 to 32 letters and digits", clip.Text(v, 40))
		}
		if rec.ID != "" {
			return true, errors.New("more than one id")
		}
		rec.ID = v
		return true, nil
	})
	if err != nil {
		return bad("%v", err)
	}
	rec.Extensions = ext
	if rec.ID == "" {
		return bad("missing id")
	}
	return rec, nil
}

// ParseTagRecord parses the tag list shared by MTA-STS (RFC 8461 §3.1) and
// TLSRPT (RFC 8460 §3) TXT records: "v=<version>" first, then key=value
// fields separated by ";". Key names are case-sensitive. field is called
// for each field after the version and reports whether it knows the key;
// the others must be well-formed extensions and are returned.
func ParseTagRecord(txt, version string, field func(k, v string) (bool, error)) ([]Extension, error) {
	fields, err := splitTXTFields(txt)
	if !strings.HasPrefix(txt, "v="+version) || err == nil && fields[0] != "v="+version {
		return nil, fmt.Errorf("must start with v=%s", version)
	}
	if err != nil {
		return nil, err
	}
	var ext []Extension
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok || !validExtName(k) {
			return nil, fmt.Errorf("field %q is not key=value", clip.Text(f, 40))
		}
		if k == "v" {
			return nil, errors.New("v= must come first and only once")
		}
		known, err := field(k, v)
		if err != nil {
			return nil, err
		}
		if known {
			continue
		}
		if !validTXTExtValue(v) {
			return nil, fmt.Errorf("value of %s has a space, \"=\" or a non-printable character", k)
		}
		ext = append(ext, Extension{k, v})
	}
	return ext, nil
}

// SelectRecord applies the selection rule shared by MTA-STS (RFC 8461 §3.1)
// and TLSRPT (RFC 8460 §3): TXT records not starting with the version tag
// are discarded, and anything but exactly one remaining record means the
// domain publishes no usable record. It returns "" when none remain.
func SelectRecord(txts []string, prefix string) (string, error) {
	var found []string
	for _, t := range txts {
		if strings.HasPrefix(t, prefix) {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return found[0], fmt.Errorf("%d TXT records start with %s; exactly one is allowed, senders ignore them all", len(found), prefix)
}

// ParsePolicy parses an MTA-STS policy body (RFC 8461 §3.2). Lines end in
// CRLF or LF; keys are case-sensitive; version, mode and max_age are
// required, and mx too unless the mode is none. Of a repeated field other
// than mx only the first counts, as the RFC says, but every value must
// still be valid. Unknown keys are kept as extensions and otherwise
// ignored.
func ParsePolicy(body string) (*Policy, error) {
	bad := func(line int, format string, args ...any) (*Policy, error) {
		where := ""
		if line > 0 {
			where = fmt.Sprintf("line %d: ", line)
		}
		return nil, fmt.Errorf("%w: %s%s", ErrPolicySyntax, where, fmt.Sprintf(format, args...))
	}
	if len(body) > MaxPolicySize {
		return bad(0, "larger than %d bytes", MaxPolicySize)
	}
	if body == "" {
		return bad(0, "empty (want version, mode, mx and max_age lines)")
	}
	lines := strings.Split(body, "\n")
	// sts-policy-record allows one terminating delimiter.
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	p := &Policy{}
	seen := map[string]bool{}
	for i, line := range lines {
		n := i + 1
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			return bad(n, "empty line")
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return bad(n, "%q is not key: value", clip.Text(line, 40))
		}
		if !validExtName(k) {
			return bad(n, "invalid key %q", clip.Text(k, 40))
		}
		v = strings.Trim(v, " \t")
		dup := seen[k]
		seen[k] = true
		switch k {
		case "version":
			if v != "STSv1" {
				return bad(n, "version %q (want STSv1)", clip.Text(v, 40))
			}
			p.Version = v
		case "mode":
			m := Mode(v)
			if m != ModeEnforce && m != ModeTesting && m != ModeNone {
				return bad(n, "mode %q (want enforce, testing or none)", clip.Text(v, 40))
			}
			if !dup {
				p.Mode = m
			}
		case "max_age":
			age, err := parseMaxAge(v)
			if err != nil {
				return bad(n, "%v", err)
			}
			if !dup {
				p.MaxAge = age
			}
		case "mx":
			pat, err := parseMXPattern(v)
			if err != nil {
				return bad(n, "%v", err)
			}
			p.MX = append(p.MX, pat)
		default:
			if !validPolicyExtValue(v) {
				return bad(n, "value of %s is empty or has control characters", k)
			}
			p.Extensions = append(p.Extensions, Extension{k, v})
		}
	}
	for _, req := range []string{"version", "mode", "max_age"} {
		if !seen[req] {
			return bad(0, "missing %s", req)
		}
	}
	if len(p.MX) == 0 && p.Mode != ModeNone {
		return bad(0, "missing mx (required unless mode is none)")
	}
	return p, nil
}

// parseMaxAge checks sts-policy-max-age-value = 1*10DIGIT, at most
// MaxPolicyAge.
func parseMaxAge(v string) (int, error) {
	if v == "" || len(v) > 10 || strings.Trim(v, "0123456789") != "" {
		return 0, fmt.Errorf("max_age %q must be 1 to 10 digits", clip.Text(v, 40))
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n > MaxPolicyAge {
		return 0, fmt.Errorf("max_age %s is larger than %d", v, MaxPolicyAge)
	}
	return int(n), nil
}

// validPolicyExtValue checks sts-policy-ext-value: visible characters
// (ASCII or UTF-8) with inner spaces or tabs.
func validPolicyExtValue(v string) bool {
	if v == "" || !utf8.ValidString(v) {
		return false
	}
	for _, r := range v {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return false
		}
	}
	return true
}

// parseMXPattern checks sts-policy-mx-value = ["*."] Domain, where Domain is
// an RFC 5321 host name in A-label form, and lowercases it. A wildcard may
// only be the whole leftmost label. The host name rule is package dnsname's, the
// one every name that reaches Postfix passes, because the patterns become
// the match= list of the Postfix answer.
func parseMXPattern(v string) (string, error) {
	name := strings.TrimPrefix(v, "*.")
	if err := checkHostname(name); err != nil {
		return "", fmt.Errorf("mx %q: %v (want a host name, or *.domain for one leftmost label)", clip.Text(v, 60), err)
	}
	return strings.ToLower(v), nil
}

// checkHostname accepts a host name in A-label form (any case), by the
// one rule of package dnsname; a wildcard gets its own reason.
func checkHostname(s string) error {
	if strings.Contains(s, "*") {
		return errors.New("a wildcard is only allowed as the whole leftmost label")
	}
	return dnsname.Check(strings.ToLower(s))
}

// MatchMX reports whether the MX host name matches one of the policy's mx
// patterns (RFC 8461 §4.1): equal ignoring case, or "*.suffix" where the
// wildcard stands for exactly one leftmost label.
func (p *Policy) MatchMX(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			label, suffix, found := strings.Cut(host, ".")
			if found && label != "" && suffix == rest {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// PostfixMatch turns the mx patterns into a Postfix "match=" list for the
// secure level: "*.example.net" becomes ".example.net" (Postfix's
// subdomain form), names are joined with ":" and duplicates dropped.
// Postfix's ".example.net" also matches deeper subdomains, which is a
// little looser than the one-label MTA-STS wildcard.
func (p *Policy) PostfixMatch() string {
	var out []string
	seen := map[string]bool{}
	for _, pat := range p.MX {
		m := pat
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			m = "." + rest
		}
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return strings.Join(out, ":")
}

// PostfixPolicy is the smtp_tls_policy_maps answer that enforces p
// (Postfix TLS_README, "MTA-STS support via smtp_tls_policy_maps"): for
// mode enforce, "secure match=<PostfixMatch> servername=hostname", so that
// Postfix requires a certificate that chains to a trusted root and names
// an MX matching a pattern, and sends the MX name as SNI. Modes testing
// and none ask senders not to insist (RFC 8461 §5): their answer is "",
// the caller's default.
func (p *Policy) PostfixPolicy() string {
	if p == nil || p.Mode != ModeEnforce || len(p.MX) == 0 {
		return ""
	}
	return "secure match=" + p.PostfixMatch() + " servername=hostname"
}

// String renders p as a policy file (RFC 8461 §3.2, CRLF line ends) that
// ParsePolicy reads back to an equal Policy: how a policy is stored.
func (p *Policy) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: %s\r\nmode: %s\r\n", p.Version, p.Mode)
	for _, m := range p.MX {
		fmt.Fprintf(&b, "mx: %s\r\n", m)
	}
	fmt.Fprintf(&b, "max_age: %d\r\n", p.MaxAge)
	for _, e := range p.Extensions {
		fmt.Fprintf(&b, "%s: %s\r\n", e.Key, e.Value)
	}
	return b.String()
}
