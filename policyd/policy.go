package policyd

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/mailtls/mailtls/dnsname"
)

// ErrBadPolicy is wrapped by every policy validation error.
var ErrBadPolicy = errors.New("policyd: invalid policy")

// Attr is one name=value attribute of a policy.
type Attr struct {
	Name, Value string
}

// Policy is a validated smtp_tls_policy_maps value: a security level and
// its attributes, in the order given.
type Policy struct {
	Level string
	Attrs []Attr
}

// maxPolicyLen caps a policy value. tcp_table(5) replies are at most 4096
// bytes after %XX-encoding, and a policy is a few dozen bytes in practice.
const maxPolicyLen = 2048

// Security levels in the order of postconf(5) smtp_tls_security_level; see
// strongerThan for which is stronger than which.
var levels = []string{"none", "may", "encrypt", "dane", "dane-only", "fingerprint", "verify", "secure"}

const levelList = "none, may, encrypt, dane, dane-only, fingerprint, verify, secure"

// AboveMay reports whether a security level, as main.cf's
// smtp_tls_security_level or a policy's first word, demands more than
// opportunistic TLS. Empty, none and may do not; every other level does, and
// so does a word that is no level at all, so that callers err towards
// leaving the decision to Postfix.
func AboveMay(level string) bool {
	switch strings.ToLower(strings.TrimSpace(level)) {
	case "", "none", "may":
		return false
	}
	return true
}

// attrSpec describes one policy table attribute: the levels it is valid at
// and how its value is validated and normalised.
type attrSpec struct {
	name   string
	levels string // human-readable list for errors
	valid  func(level string) bool
	norm   func(level, val string) (string, error)
}

func notNone(level string) bool { return level != "none" }

// Attributes in the order of postconf(5). smtp_tls_policy.c accepts some of
// them more than once (match, tafile); we require one of each so that a
// policy has a single normal form: combine match lists inside one value.
var attrSpecs = []attrSpec{
	{"protocols", "any level but none", notNone, normProtocols},
	{"ciphers", "any level but none", notNone, normCiphers},
	{"exclude", "any level but none", notNone, normExclude},
	{"match", "fingerprint, verify and secure", func(l string) bool {
		return l == "fingerprint" || l == "verify" || l == "secure"
	}, normMatch},
	{"servername", "any level but none", notNone, normServername},
	// smtp_tls_policy.c: tafile "only makes sense if we're using CA-based trust".
	{"tafile", "verify and secure", func(l string) bool { return l == "verify" || l == "secure" }, normTafile},
	{"connection_reuse", "any level but none", notNone, yesNo("connection_reuse")},
	{"enable_rpk", "any level but none", notNone, yesNo("enable_rpk")},
}

const attrList = "protocols, ciphers, exclude, match, servername, tafile, connection_reuse, enable_rpk"

func badPolicy(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadPolicy}, args...)...)
}

// ParsePolicy parses, validates and normalises a policy such as
// "encrypt protocols=>=TLSv1.2 ciphers=high". Tokens are separated by
// spaces or tabs. Commas, braces, line breaks, other control characters and
// non-ASCII bytes are rejected: Postfix splits a policy on whitespace and
// commas and groups braced text, so any of them could hide an attribute.
func ParsePolicy(s string) (Policy, error) {
	if len(s) > maxPolicyLen {
		return Policy{}, badPolicy("policy is %d bytes long (want at most %d)", len(s), maxPolicyLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
		case c == '\n' || c == '\r':
			return Policy{}, badPolicy("line break at offset %d in %q (want one line)", i, s)
		case c < 0x20 || c == 0x7f:
			return Policy{}, badPolicy("control character %q at offset %d in %q", c, i, s)
		case c >= 0x80:
			return Policy{}, badPolicy("non-ASCII byte at offset %d in %q (want ASCII; use A-labels for domain names)", i, s)
		case c == ',':
			return Policy{}, badPolicy("comma at offset %d in %q (Postfix splits on commas; separate attributes with spaces and list items with \":\")", i, s)
		case c == '{' || c == '}':
			return Policy{}, badPolicy("brace at offset %d in %q (the { name = value } form is not accepted; write name=value)", i, s)
		}
	}
	return parseTokens(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' }))
}

// ParseDefault validates the daemon's default answer, for destinations
// without an override: a policy value in normal form (ParsePolicy), or ""
// for "notfound" (in any case), which answers NOTFOUND so that main.cf's
// smtp_tls_security_level applies.
func ParseDefault(s string) (string, error) {
	if strings.EqualFold(strings.TrimSpace(s), "notfound") {
		return "", nil
	}
	p, err := ParsePolicy(s)
	if err != nil {
		return "", err
	}
	return p.String(), nil
}

// ParsePolicyFields is ParsePolicy for a policy already split into fields,
// as command-line arguments are. A field may itself hold several
// space-separated tokens.
func ParsePolicyFields(fields []string) (Policy, error) {
	return ParsePolicy(strings.Join(fields, " "))
}

func parseTokens(toks []string) (Policy, error) {
	if len(toks) == 0 {
		return Policy{}, badPolicy("empty policy (want a level: one of %s)", levelList)
	}
	level := strings.ToLower(toks[0])
	if !isLevel(level) {
		if strings.Contains(level, "=") {
			return Policy{}, badPolicy("policy starts with attribute %q (want a level first: one of %s)", toks[0], levelList)
		}
		return Policy{}, badPolicy("unknown level %q (want one of %s)", toks[0], levelList)
	}
	p := Policy{Level: level}
	if level == "none" && len(toks) > 1 {
		// Postfix ignores attributes with TLS disabled; refuse them so that
		// nobody believes they have an effect.
		return Policy{}, badPolicy("level none takes no attributes, got %q", toks[1])
	}
	for _, tok := range toks[1:] {
		eq := strings.IndexByte(tok, '=')
		if eq < 0 {
			return Policy{}, badPolicy("attribute %q is not name=value (want name=value with name one of %s)", tok, attrList)
		}
		name, val := strings.ToLower(tok[:eq]), tok[eq+1:]
		spec := findAttr(name)
		if spec == nil {
			return Policy{}, badPolicy("unknown attribute %q (want one of %s)", tok[:eq], attrList)
		}
		if val == "" {
			return Policy{}, badPolicy("attribute %s has an empty value", name)
		}
		for _, a := range p.Attrs {
			if a.Name == name {
				return Policy{}, badPolicy("attribute %s given twice (give it once; put several match patterns in one colon- or |-separated list)", name)
			}
		}
		if !spec.valid(level) {
			return Policy{}, badPolicy("attribute %s is not allowed with level %s (allowed with %s)", name, level, spec.levels)
		}
		v, err := spec.norm(level, val)
		if err != nil {
			return Policy{}, err
		}
		p.Attrs = append(p.Attrs, Attr{Name: name, Value: v})
	}
	if level == "fingerprint" && !p.has("match") {
		// smtp_tls_fingerprint_cert_match may supply them, but a policy
		// that relies on main.cf for its only check defers every message
		// when main.cf has none ("no fingerprints to match").
		return Policy{}, badPolicy("level fingerprint needs match=DIGEST (Postfix defers with \"no fingerprints to match\"; want e.g. fingerprint match=AB:CD:...:EF)")
	}
	return p, nil
}

func (p Policy) has(name string) bool {
	for _, a := range p.Attrs {
		if a.Name == name {
			return true
		}
	}
	return false
}

// String returns the normal form of p, as Postfix receives it: the level,
// then name=value attributes, separated by single spaces.
func (p Policy) String() string {
	n := len(p.Level)
	for _, a := range p.Attrs {
		n += 2 + len(a.Name) + len(a.Value)
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(p.Level)
	for _, a := range p.Attrs {
		b.WriteByte(' ')
		b.WriteString(a.Name)
		b.WriteByte('=')
		b.WriteString(a.Value)
	}
	return b.String()
}

func isLevel(s string) bool {
	for _, l := range levels {
		if s == l {
			return true
		}
	}
	return false
}

func findAttr(name string) *attrSpec {
	for i := range attrSpecs {
		if attrSpecs[i].name == name {
			return &attrSpecs[i]
		}
	}
	return nil
}

// Protocol names of postconf(5) smtp_tls_protocols, in version order.
var protoNames = []string{"SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}

const protoHelp = `want SSLv2, SSLv3, TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3, each optionally prefixed by "!", ">=" or "<=", separated by ":"`

// normProtocols validates a protocols value: either an include/exclude list
// ("!SSLv2:!SSLv3", "TLSv1.2:TLSv1.3") or version bounds (">=TLSv1.2",
// ">=TLSv1.2:<=TLSv1.3", Postfix 3.6 and later).
func normProtocols(_, val string) (string, error) {
	parts := strings.Split(val, ":")
	const unset = -1
	lo, hi := unset, unset
	state := make([]byte, len(protoNames)) // 0, '+' included, '!' excluded
	for i, p := range parts {
		if p == "" {
			return "", badPolicy("protocols=%s has an empty list item (%s)", val, protoHelp)
		}
		prefix := ""
		for _, pre := range []string{">=", "<=", "!"} {
			if strings.HasPrefix(p, pre) {
				prefix = pre
				break
			}
		}
		idx := protoIndex(p[len(prefix):])
		if idx < 0 {
			return "", badPolicy("protocols=%s: unknown protocol %q (%s)", val, p, protoHelp)
		}
		parts[i] = prefix + protoNames[idx]
		switch prefix {
		case ">=":
			if lo != unset {
				return "", badPolicy("protocols=%s gives two lower bounds (want at most one >=)", val)
			}
			lo = idx
		case "<=":
			if hi != unset {
				return "", badPolicy("protocols=%s gives two upper bounds (want at most one <=)", val)
			}
			hi = idx
		default:
			mark := byte('+')
			if prefix == "!" {
				mark = '!'
			}
			if state[idx] != 0 {
				return "", badPolicy("protocols=%s names %s twice", val, protoNames[idx])
			}
			state[idx] = mark
		}
	}
	if lo != unset && hi != unset && lo > hi {
		return "", badPolicy("protocols=%s: lower bound %s is above upper bound %s", val, protoNames[lo], protoNames[hi])
	}
	if !anyProtocolLeft(state, lo, hi) {
		return "", badPolicy("protocols=%s enables none of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3 (OpenSSL has no SSLv2 or SSLv3; Postfix would fail every handshake)", val)
	}
	return strings.Join(parts, ":"), nil
}

// firstUsableProto is the index of TLSv1 in protoNames: OpenSSL 1.1 and
// later have no SSLv2, and Debian's none of SSLv3 either.
const firstUsableProto = 2

// anyProtocolLeft applies Postfix's protocol rules (tls_protocol_mask): a
// list that names protocols enables only those, "!" removes one, and the
// bounds cut the rest. It reports whether a usable protocol remains.
func anyProtocolLeft(state []byte, lo, hi int) bool {
	include := false
	for _, m := range state {
		if m == '+' {
			include = true
		}
	}
	for i := firstUsableProto; i < len(protoNames); i++ {
		switch {
		case include && state[i] != '+', state[i] == '!':
		case lo >= 0 && i < lo, hi >= 0 && i > hi:
		default:
			return true
		}
	}
	return false
}

func protoIndex(s string) int {
	for i, n := range protoNames {
		if strings.EqualFold(s, n) {
			return i
		}
	}
	return -1
}

// normCiphers validates a cipher grade (postconf(5) smtp_tls_mandatory_ciphers).
func normCiphers(_, val string) (string, error) {
	v := strings.ToLower(val)
	switch v {
	case "export", "low", "medium", "high":
		return v, nil
	case "null":
		// tls_null_cipherlist is eNULL: authentication without encryption.
		// Postfix refuses it at mandatory levels ("error setting cipher
		// grade"); elsewhere a TLS 1.2 peer would get cleartext.
		return "", badPolicy("ciphers=null: NULL ciphers do not encrypt (Postfix defers mandatory TLS with them; want export, low, medium or high)")
	}
	return "", badPolicy("ciphers=%s: unknown cipher grade (want one of export, low, medium, high)", val)
}

// normExclude validates a colon-separated list of OpenSSL cipher names or
// aliases. OpenSSL names are case-sensitive ("aNULL"), so case is kept.
func normExclude(_, val string) (string, error) {
	toks := strings.Split(val, ":")
	for _, p := range toks {
		if p == "" {
			return "", badPolicy("exclude=%s has an empty list item (want OpenSSL cipher names separated by \":\")", val)
		}
		// Postfix prefixes each item with "!" itself and refuses any
		// other unary (tls_misc.c: "invalid unary '!+-@' in cipher
		// exclusion"), which fails every TLS session to the destination.
		if strings.ContainsRune("!+-@", rune(p[0])) {
			return "", badPolicy("exclude=%s: item %q starts with %q (Postfix refuses a unary !, +, - or @ in exclusions; list plain names such as aNULL:3DES)", val, p, p[:1])
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			if !isAlnum(c) && !strings.ContainsRune("+_!-.@", rune(c)) {
				return "", badPolicy("exclude=%s: character %q is not allowed (want OpenSSL cipher names of A-Z a-z 0-9 + _ ! - . @, separated by \":\")", val, c)
			}
		}
	}
	if excludesEveryCipher(toks) {
		return "", badPolicy("exclude=%s rules out every cipher before TLS 1.3 (Postfix then fails to start TLS at all; under may the mail goes out in plaintext)", val)
	}
	return val, nil
}

// normMatch validates certificate match patterns. At the fingerprint level
// they are "|"-separated digests (the digest itself uses ":"), otherwise
// ":"-separated names (smtp_tls_policy.c splits them exactly so).
func normMatch(level, val string) (string, error) {
	if level == "fingerprint" {
		parts := strings.Split(val, "|")
		for i, p := range parts {
			fp, err := normFingerprint(p)
			if err != nil {
				return "", badPolicy("match=%s: %v (want hex digests such as AB:CD:..:EF separated by \"|\")", val, err)
			}
			parts[i] = fp
		}
		return strings.Join(parts, "|"), nil
	}
	parts := strings.Split(strings.ToLower(val), ":")
	for _, p := range parts {
		switch p {
		case "hostname", "nexthop", "dot-nexthop":
			continue
		case "":
			return "", badPolicy("match=%s has an empty list item (want hostname, nexthop, dot-nexthop, example.com or .example.com, separated by \":\")", val)
		}
		name := strings.TrimPrefix(p, ".")
		if err := dnsname.Check(name); err != nil {
			return "", badPolicy("match=%s: %q is not a keyword or domain name: %v (want hostname, nexthop, dot-nexthop, example.com or .example.com, separated by \":\")", val, p, err)
		}
	}
	return strings.Join(parts, ":"), nil
}

// normFingerprint accepts a hex digest with or without ":" between byte
// pairs and returns it as uppercase colon-separated pairs.
func normFingerprint(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty fingerprint")
	}
	var raw string
	if strings.Contains(s, ":") {
		pairs := strings.Split(s, ":")
		for _, p := range pairs {
			if len(p) != 2 {
				return "", fmt.Errorf("fingerprint %q is not hex pairs separated by \":\"", s)
			}
		}
		raw = strings.Join(pairs, "")
	} else {
		raw = s
	}
	b, err := hex.DecodeString(raw)
	if err != nil {
		return "", fmt.Errorf("fingerprint %q is not hexadecimal", s)
	}
	// MD5 (16) up to SHA-512 (64) bytes; smtp_tls_fingerprint_digest decides.
	if len(b) < 16 || len(b) > 64 {
		return "", fmt.Errorf("fingerprint %q is %d bytes long (want 16 to 64)", s, len(b))
	}
	out := make([]byte, 0, 3*len(b))
	for i, c := range b {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
	}
	return string(out), nil
}

// normServername accepts a hostname or the literal "hostname" (use the MX
// host name), as smtp_tls_policy.c checks with valid_hostname().
func normServername(_, val string) (string, error) {
	v := strings.ToLower(val)
	if v == "hostname" {
		return v, nil
	}
	if err := dnsname.Check(v); err != nil {
		return "", badPolicy("servername=%s: %v (want a host name or the word hostname)", val, err)
	}
	return v, nil
}

// normTafile accepts one absolute path; the token charset has already ruled
// out whitespace, commas, braces and control characters.
func normTafile(_, val string) (string, error) {
	if !strings.HasPrefix(val, "/") {
		return "", badPolicy("tafile=%s is not an absolute path (want /path/to/file)", val)
	}
	if strings.HasSuffix(val, "/") {
		return "", badPolicy("tafile=%s names a directory (want /path/to/file)", val)
	}
	return val, nil
}

func yesNo(name string) func(_, val string) (string, error) {
	return func(_, val string) (string, error) {
		v := strings.ToLower(val)
		if v != "yes" && v != "no" {
			return "", badPolicy("%s=%s (want yes or no)", name, val)
		}
		return v, nil
	}
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ParseOverride parses an override as `mailtls policy set` takes it: the
// key, normalised, then the policy's fields. A field may hold several
// space-separated tokens, but no line break.
func ParseOverride(args []string) (key string, p Policy, err error) {
	if len(args) < 2 {
		return "", Policy{}, badPolicy("an override needs KEY and LEVEL")
	}
	if key, err = NormalizeKey(args[0]); err != nil {
		return "", Policy{}, err
	}
	var fields []string
	for _, a := range args[1:] {
		if strings.ContainsAny(a, "\r\n") {
			return "", Policy{}, errors.New("policy value contains a line break (not allowed)")
		}
		fields = append(fields, strings.Fields(a)...)
	}
	p, err = ParsePolicyFields(fields)
	return key, p, err
}
