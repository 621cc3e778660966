// Package clip shortens text for messages: errors, logs and one-line
// answers that quote what a client, a log or a server sent.
package clip

import "strings"

// Text returns s cut to its first n bytes with "..." appended, or s when
// it is at most n bytes long.
func Text(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Line returns s on one line, with every control character (C0 and DEL)
// a space, cut as Text(s, n) does; n <= 0 does not cut.
func Line(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if n <= 0 {
		return s
	}
	return Text(s, n)
}
