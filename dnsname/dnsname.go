// Package dnsname is mailtls's one rule for the syntax of host and domain
// names: override keys, policy attributes (match=, servername=), MTA-STS mx
// patterns, MX host names from DNS, `check` arguments, report domain
// filters and internal relay names all pass through Check, so that no two
// parts of mailtls disagree on what a host name is.
//
// The rule is Postfix's (valid_hostname(3) accepts "_") within the lengths
// of RFC 1035 §2.3.4, with the last label not all digits (RFC 3696 §2: a
// top-level domain is never numeric, so "192.0.2.1" is an address, not a
// name), and "xn--" labels that are valid punycode. Names are checked in
// their lowercase A-label form: ToASCII makes that form from what a user
// or a log wrote.
package dnsname

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// MaxName and MaxLabel are the lengths of RFC 1035 §2.3.4, in bytes of the
// A-label form, without a trailing dot.
const (
	MaxName  = 253
	MaxLabel = 63
)

// profile maps U-labels to A-labels for lookup (RFC 5891 §5), with
// non-transitional processing (UTS #46), as browsers and resolvers do.
var profile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.BidiRule(),
)

// ToASCII returns the lowercase A-label form of a name that may hold
// U-labels or capitals ("Bücher.Example" is "xn--bcher-kva.example"). It
// does not drop a trailing dot, and it does not apply Check.
func ToASCII(name string) (string, error) {
	ascii := true
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if !ascii {
		a, err := profile.ToASCII(name)
		if err != nil {
			return "", fmt.Errorf("not a valid internationalised domain name: %v", err)
		}
		name = a
	}
	return strings.ToLower(name), nil
}

// ToUnicode returns the U-label form of a lowercase A-label name
// ("xn--bcher-kva.example" is "bücher.example"), as an SMTPUTF8 address
// spells it; a name without xn-- labels comes back as it is.
func ToUnicode(name string) (string, error) {
	if !strings.Contains(name, "xn--") {
		return name, nil
	}
	u, err := profile.ToUnicode(name)
	if err != nil {
		return "", fmt.Errorf("not a valid internationalised domain name: %v", err)
	}
	return u, nil
}

// Check reports why name is not a lowercase A-label host name, or nil:
// labels of letters, digits, hyphens and underscores, 1 to 63 bytes each,
// no hyphen at either end of a label, 253 bytes in all, no trailing dot,
// a last label that is not all digits, and "xn--" labels that decode.
func Check(name string) error {
	if name == "" {
		return errors.New("empty domain name")
	}
	if len(name) > MaxName {
		return fmt.Errorf("domain name is %d bytes long (want at most %d)", len(name), MaxName)
	}
	var last string
	for rest := name; ; {
		label := rest
		dot := strings.IndexByte(rest, '.')
		if dot >= 0 {
			label, rest = rest[:dot], rest[dot+1:]
		}
		if err := checkLabel(label); err != nil {
			return err
		}
		last = label
		if dot < 0 {
			break
		}
	}
	if allDigits(last) {
		return fmt.Errorf("last label %q is all digits", last)
	}
	return nil
}

// Valid reports whether Check accepts name.
func Valid(name string) bool { return Check(name) == nil }

func checkLabel(l string) error {
	switch {
	case l == "":
		return errors.New("empty label (two dots in a row, or a dot at the start or end)")
	case len(l) > MaxLabel:
		return fmt.Errorf("label %q is %d bytes long (want at most %d)", l[:40]+"...", len(l), MaxLabel)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if c >= 0x80 {
			return fmt.Errorf("label %q is not ASCII (want the A-label form, xn--..., of an internationalised name)", l)
		}
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("character %q in label %q (want lowercase letters, digits, hyphens)", c, l)
		}
	}
	if strings.HasPrefix(l, "xn--") {
		if _, err := profile.ToUnicode(l); err != nil {
			return fmt.Errorf("label %q is not valid punycode: %v", l, err)
		}
	}
	return nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
