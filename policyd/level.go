package policyd

import "strings"

// RequiresTLS reports whether the policy value v (a level and its
// attributes, as stored) is a mandatory TLS level: encrypt, dane-only,
// fingerprint, verify or secure. Under these Postfix never sends in
// plaintext (postconf(5) smtp_tls_security_level); under none, may and
// dane (which falls back to may without usable TLSA records) it may.
func RequiresTLS(v string) bool {
	level, _, _ := strings.Cut(strings.TrimSpace(v), " ")
	switch strings.ToLower(level) {
	case "encrypt", "dane-only", "fingerprint", "verify", "secure":
		return true
	}
	return false
}
