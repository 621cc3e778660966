package policyd

import (
	"strings"
	"unicode"
)

// The vocabulary of security levels (postconf(5) smtp_tls_security_level),
// defined once: the store, the log parser and the command ask these
// functions rather than keep lists of their own.

// LevelOf returns the level of a policy value: its first word, in lower
// case, or "" for an empty value. It does not check that the word is a
// level (IsLevel).
// It allocates only for a level not in lower case.
func LevelOf(policy string) string {
	s := strings.TrimLeftFunc(policy, unicode.IsSpace)
	if i := strings.IndexFunc(s, unicode.IsSpace); i >= 0 {
		s = s[:i]
	}
	return strings.ToLower(s)
}

// IsLevel reports whether s (in lower case) is a security level.
func IsLevel(s string) bool { return isLevel(s) }

// Levels returns the security levels in the order of postconf(5).
func Levels() []string { return append([]string(nil), levels...) }

// RequiresTLS reports whether the policy value v (a level and its
// attributes, as stored) is a mandatory TLS level: encrypt, dane-only,
// fingerprint, verify or secure. Under these Postfix never sends in
// plaintext (postconf(5) smtp_tls_security_level); under none, may and
// dane (which falls back to may without usable TLSA records) it may.
func RequiresTLS(v string) bool {
	switch LevelOf(v) {
	case "encrypt", "dane-only", "fingerprint", "verify", "secure":
		return true
	}
	return false
}

// Authenticates reports whether the policy value v (or a bare level)
// sends only to a peer it has authenticated: dane-only (TLSA records),
// fingerprint (pinned certificates), verify and secure (a trusted chain
// and a matching name). Such a level also defers an encrypted delivery to
// an anonymous or untrusted peer. dane does not: without usable TLSA
// records it falls back to may.
func Authenticates(v string) bool {
	switch LevelOf(v) {
	case "dane-only", "fingerprint", "verify", "secure":
		return true
	}
	return false
}
