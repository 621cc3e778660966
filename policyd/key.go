package policyd

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mailtls/mailtls/dnsname"
	"github.com/mailtls/mailtls/internal/clip"
)

// ErrBadKey is wrapped by every key validation error.
var ErrBadKey = errors.New("policyd: invalid key")

const keyHelp = "want example.com, .example.com, example.com:port, [host], [host]:port, [192.0.2.1]:25 or [ipv6:2001:db8::1]:25"

func badKey(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadKey}, args...)...)
}

// NormalizeKey validates an override key and returns its normal form, the
// form Postfix uses as a lookup key (Postfix folds table keys to lowercase).
//
// Accepted forms, after trimming surrounding whitespace:
//
//	example.com           a recipient domain or next-hop domain
//	.example.com          every subdomain of example.com, not example.com itself
//	example.com:587       a next-hop domain with a port (transport(5))
//	[mx.example.com]      a next-hop host without MX lookup
//	[mx.example.com]:587  the same, with a port
//	[192.0.2.1]:25        an IPv4 address literal
//	[ipv6:2001:db8::1]:25 an IPv6 address literal; [2001:db8::1] is accepted too
//
// Postfix looks up bracketed and host:port next-hops exactly as written in
// the transport table (smtp_tls_policy.c), so they are only lowercased:
// address literals are checked but not rewritten, and ports may be numbers
// (1-65535, no leading zeros) or service names (RFC 6335, section 5.1).
// Domain names are converted to A-labels (xn--...) and a trailing dot is
// dropped.
func NormalizeKey(key string) (string, error) {
	k := strings.TrimSpace(key)
	if k == "" {
		return "", badKey("empty key (%s)", keyHelp)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == ' ' || c == '\t':
			return "", badKey("whitespace in key %q (%s)", key, keyHelp)
		case c < 0x20 || c == 0x7f:
			return "", badKey("control character %q in key %q (%s)", c, key, keyHelp)
		case c == ',':
			return "", badKey("comma in key %q (give one key at a time)", key)
		}
	}
	if len(k) > 300 {
		return "", badKey("key %q is %d bytes long (%s)", clip.Text(k, 40), len(k), keyHelp)
	}
	switch {
	case k[0] == '[':
		return normBracketed(key, k)
	case strings.HasPrefix(k, "*.") && len(k) > 2:
		return "", badKey("key %q: the subdomains of %s are the key %q, as in Postfix's tables (%s for %s itself)", key, k[2:], k[1:], k[2:], k[2:])
	case k[0] == '.':
		d, err := normDomain(key, k[1:])
		if err != nil {
			return "", err
		}
		return "." + d, nil
	}
	if i := strings.LastIndexByte(k, ':'); i >= 0 {
		if strings.IndexByte(k[:i], ':') >= 0 {
			return "", badKey("key %q looks like an IPv6 address (want it bracketed: [ipv6:...] or [ipv6:...]:port)", key)
		}
		d, err := normDomain(key, k[:i])
		if err != nil {
			return "", err
		}
		p, err := normPort(key, k[i+1:])
		if err != nil {
			return "", err
		}
		return d + ":" + p, nil
	}
	return normDomain(key, k)
}

// Key is an override key taken apart: the one grammar of policy table
// keys, for the daemon, the store and the commands.
type Key struct {
	Text      string // the normal form, as NormalizeKey returns it
	Bracketed bool   // [host] or [host]:port: a next-hop host, without MX lookup
	Parent    bool   // .example.com: every subdomain of Host, not Host itself
	Host      string // the domain, or what the brackets hold ("ipv6:" kept)
	Port      string // "" when the key has none
}

// ParseKey validates an override key as NormalizeKey does and returns it
// taken apart.
func ParseKey(key string) (Key, error) {
	n, err := NormalizeKey(key)
	if err != nil {
		return Key{}, err
	}
	k := Key{Text: n, Host: n}
	switch {
	case n[0] == '[':
		end := strings.IndexByte(n, ']')
		k.Bracketed, k.Host = true, n[1:end]
		k.Port = strings.TrimPrefix(n[end+1:], ":")
	case n[0] == '.':
		k.Parent, k.Host = true, n[1:]
	default:
		if i := strings.LastIndexByte(n, ':'); i >= 0 {
			k.Host, k.Port = n[:i], n[i+1:]
		}
	}
	return k, nil
}

func normBracketed(orig, k string) (string, error) {
	end := strings.IndexByte(k, ']')
	if end < 0 {
		return "", badKey("key %q has no closing bracket (%s)", orig, keyHelp)
	}
	inner, rest := strings.ToLower(k[1:end]), k[end+1:]
	var host string
	switch {
	case inner == "":
		return "", badKey("key %q has nothing inside the brackets (%s)", orig, keyHelp)
	case strings.HasPrefix(inner, "ipv6:"):
		a, err := netip.ParseAddr(inner[len("ipv6:"):])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", badKey("key %q: %q is not an IPv6 address (%s)", orig, inner[len("ipv6:"):], keyHelp)
		}
		host = inner
	case strings.IndexByte(inner, ':') >= 0:
		a, err := netip.ParseAddr(inner)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", badKey("key %q: %q is not an IPv6 address (%s)", orig, inner, keyHelp)
		}
		host = inner
	case looksNumeric(inner):
		a, err := netip.ParseAddr(inner)
		if err != nil || !a.Is4() {
			return "", badKey("key %q: %q is not an IPv4 address (%s)", orig, inner, keyHelp)
		}
		host = inner
	default:
		if inner[0] == '.' {
			return "", badKey("key %q: a bracketed host cannot be a .parent wildcard (%s)", orig, keyHelp)
		}
		d, err := normDomain(orig, k[1:end])
		if err != nil {
			return "", err
		}
		host = d
	}
	switch {
	case rest == "":
		return "[" + host + "]", nil
	case rest[0] == ':':
		p, err := normPort(orig, rest[1:])
		if err != nil {
			return "", err
		}
		return "[" + host + "]:" + p, nil
	}
	return "", badKey("key %q has %q after the closing bracket (want nothing or :port)", orig, rest)
}

// looksNumeric reports whether s consists of digits and dots only, that is,
// is meant as an IPv4 address rather than a host name.
func looksNumeric(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}

func normPort(orig, p string) (string, error) {
	if p == "" {
		return "", badKey("key %q has an empty port (want 1-65535 or a service name such as smtp)", orig)
	}
	if p[0] >= '0' && p[0] <= '9' {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || p[0] == '0' {
			return "", badKey("key %q has bad port %q (want 1-65535 without leading zeros, or a service name such as smtp)", orig, p)
		}
		return p, nil
	}
	// RFC 6335 section 5.1: 1-15 characters of letters, digits and
	// hyphens, at least one letter, no hyphen at either end or twice in a row.
	s := strings.ToLower(p)
	ok := len(s) <= 15 && s[0] != '-' && s[len(s)-1] != '-' && !strings.Contains(s, "--")
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
	}
	if !ok {
		return "", badKey("key %q has bad port %q (want 1-65535 or a service name such as smtp)", orig, p)
	}
	return s, nil
}

// normDomain returns d as a lowercase A-label domain name, without one
// trailing dot (an absolute name, RFC 1034 section 3.1). The dot is dropped
// after IDNA mapping, so that an ideographic full stop (U+3002) counts too.
func normDomain(orig, d string) (string, error) {
	d, err := dnsname.ToASCII(d)
	if err != nil {
		return "", badKey("key %q is %v", orig, err)
	}
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return "", badKey("key %q has an empty domain name (%s)", orig, keyHelp)
	}
	d = strings.ToLower(d)
	if err := dnsname.Check(d); err != nil {
		if looksNumeric(d) {
			return "", badKey("key %q is an address, not a domain (want [%s] or [%s]:port)", orig, d, d)
		}
		return "", badKey("key %q: %v (%s)", orig, err, keyHelp)
	}
	return d, nil
}

// maxLookupKey bounds the keys the daemon looks up. Postfix asks for next-hop
// destinations: a domain name is at most 253 characters, and brackets and a
// port add a few more; 512 leaves room for UTF-8 domain names.
const maxLookupKey = 512

// checkLookupKey refuses request keys that no Postfix lookup produces: empty
// ones, over-long ones, and ones with spaces or control characters. They are
// answered with an error rather than the default policy, so a client that
// sends them learns it is broken instead of receiving "may".
func checkLookupKey(key []byte) error {
	if len(key) == 0 {
		return errors.New("invalid key: empty (want a next-hop destination such as example.com or [192.0.2.1]:25)")
	}
	if len(key) > maxLookupKey {
		return fmt.Errorf("invalid key: %d bytes long (a destination is at most %d)", len(key), maxLookupKey)
	}
	ascii := true
	for _, c := range key {
		if c <= ' ' || c == 0x7f {
			return fmt.Errorf("invalid key: contains byte 0x%02x (spaces and control characters are not allowed)", c)
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	// Postfix sends domain names as ASCII or, with SMTPUTF8, as UTF-8;
	// anything else is a broken client, not a destination to answer for.
	if !ascii && !utf8.Valid(key) {
		return errors.New("invalid key: not UTF-8 (want a next-hop destination such as example.com or [192.0.2.1]:25)")
	}
	return nil
}

// trimKeyDot drops one trailing dot from the host name of a lowercase
// lookup key, in place: "bank.example." "[bank.example.]:25" and
// "relay.example.:2525" become what NormalizeKey makes of them. Keys with a
// "/" (UNIX-domain next-hops) are left alone.
func trimKeyDot(k []byte) []byte {
	n := len(k)
	if n < 2 || bytes.IndexByte(k, '/') >= 0 {
		return k
	}
	if k[n-1] == '.' {
		return k[:n-1]
	}
	end := -1 // index of the byte after the host name
	if k[0] == '[' {
		end = bytes.IndexByte(k, ']')
	} else if i := bytes.IndexByte(k, ':'); i > 0 && bytes.IndexByte(k[i+1:], ':') < 0 {
		end = i
	}
	if end < 2 || k[end-1] != '.' || k[end-2] == '[' {
		return k
	}
	copy(k[end-1:], k[end:])
	return k[:n-1]
}
