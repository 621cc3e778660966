package policyd

// The strength of a policy: which replacements can only make TLS stricter.
//
// Levels form a partial order, not a line (postconf(5),
// smtp_tls_security_level):
//
//	none < may < encrypt < fingerprint, verify, secure, dane-only
//	       may < dane    < dane-only
//
// dane is not above encrypt (without TLSA records it is may), and the
// authenticated levels trust different things (a pinned digest, the CA
// roots with different default match lists, DNSSEC), so none of them is
// above another.
var strongerThan = map[string][]string{
	"none":        nil,
	"may":         {"none"},
	"encrypt":     {"may", "none"},
	"dane":        {"may", "none"},
	"fingerprint": {"encrypt", "may", "none"},
	"verify":      {"encrypt", "may", "none"},
	"secure":      {"encrypt", "may", "none"},
	"dane-only":   {"dane", "encrypt", "may", "none"},
}

// LevelAbove reports whether level a is strictly stronger than level b.
// Unknown levels are above nothing and below nothing.
func LevelAbove(a, b string) bool {
	for _, l := range strongerThan[a] {
		if l == b {
			return true
		}
	}
	return false
}

// Lowers reports whether replacing the policy from with to could make
// Postfix use weaker TLS for a destination, or a different trust that is
// not clearly stronger. It is conservative: only a change to a strictly
// stronger level that keeps every attribute of from unchanged (protocols,
// ciphers, match, ...) is not lowering. Any other change is, including a
// change within a level (secure match=A to secure match=B, or dropping
// protocols=), because a different match list or cipher grade may accept
// more servers and we do not try to tell.
func Lowers(from, to Policy) bool {
	if from.String() == to.String() {
		return false
	}
	if !LevelAbove(to.Level, from.Level) {
		return true
	}
	for _, a := range from.Attrs {
		kept := false
		for _, b := range to.Attrs {
			if a == b {
				kept = true
				break
			}
		}
		if !kept {
			return true
		}
	}
	return false
}
