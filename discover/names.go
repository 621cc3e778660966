package discover

import (
	"errors"
	"fmt"
	"strings"
)

// isAlnum reports whether c is an ASCII letter or digit.
func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// checkHostname validates an RFC 5321 Domain: LDH labels of 1 to 63
// characters, not starting or ending with "-", at most 253 characters,
// no trailing dot.
func checkHostname(s string) error {
	if s == "" {
		return errors.New("empty name")
	}
	if len(s) > 253 {
		return errors.New("longer than 253 characters")
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" {
			return errors.New("empty label")
		}
		if len(l) > 63 {
			return errors.New("label longer than 63 characters")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with \"-\"", l)
		}
		for i := 0; i < len(l); i++ {
			if !isAlnum(l[i]) && l[i] != '-' {
				return fmt.Errorf("label %q has character %q (only letters, digits and \"-\")", shorten(l, 63), l[i])
			}
		}
	}
	return nil
}

// shorten truncates s for error messages.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
