package output

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Escape returns s with everything that could move the cursor or
// reprogram a terminal written as a visible escape: C0 control bytes and
// DEL (\x1b, \r, \n, \t, ...), C1 controls (U+0080 to U+009F, \u009b is
// CSI on some terminals), Unicode bidirectional overrides and isolates
// (which reorder what is shown), and bytes that are not UTF-8 (\xNN; a raw
// 0x9b is CSI too). Everything else, backslashes included, is kept.
func Escape(s string) string {
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] < 0x7f {
		i++
	}
	if i == len(s) {
		return s // the usual case: printable ASCII
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		i += escapeOne(&b, s, i)
	}
	return b.String()
}

// escapeOne writes the character of s at i, escaped if need be, and
// returns its length in bytes.
func escapeOne(b *strings.Builder, s string, i int) int {
	c := s[i]
	if c >= 0x20 && c < 0x7f {
		b.WriteByte(c)
		return 1
	}
	if c < 0x80 {
		fmt.Fprintf(b, "\\x%02x", c)
		return 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	switch {
	case r == utf8.RuneError && n == 1:
		fmt.Fprintf(b, "\\x%02x", c)
	case r >= 0x80 && r <= 0x9f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		fmt.Fprintf(b, "\\u%04x", r)
	default:
		b.WriteString(s[i : i+n])
	}
	return n
}

// EscapeCells returns the cells escaped, in a new slice.
func EscapeCells(cells []string) []string {
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = Escape(c)
	}
	return out
}
