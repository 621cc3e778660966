package policyd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrBadTable is returned for a malformed Postfix lookup table source file.
var ErrBadTable = errors.New("policyd: invalid table file")

// TableEntry is one `key value` entry of a Postfix table source file.
type TableEntry struct {
	Line  int // line number where the logical line starts
	Key   string
	Value string // normalised policy value
}

// maxTableLine bounds one logical line of a table file.
const maxTableLine = 64 << 10

// ReadTable parses the source format of a Postfix hash: or texthash: table
// (postmap(1), "INPUT FILE FORMAT"): one `key whitespace value` entry per
// logical line; blank lines and lines whose first non-blank character is '#'
// are ignored; a line that starts with whitespace continues the previous
// logical line. Every key and value is validated; all errors are collected
// and returned together, each naming its line, so that a file is accepted
// whole or not at all.
func ReadTable(r io.Reader) ([]TableEntry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxTableLine)
	type logical struct {
		line int
		text string
	}
	var lines []logical
	n := 0
	for sc.Scan() {
		n++
		raw := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if raw[0] == ' ' || raw[0] == '\t' {
			if len(lines) == 0 {
				return nil, fmt.Errorf("%w: line %d: continuation line with nothing to continue", ErrBadTable, n)
			}
			lines[len(lines)-1].text += " " + trimmed
			continue
		}
		lines = append(lines, logical{line: n, text: trimmed})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: line %d: longer than %d bytes", ErrBadTable, n+1, maxTableLine)
		}
		return nil, err
	}
	var (
		out  []TableEntry
		errs []string
		seen = map[string]int{}
	)
	for _, l := range lines {
		key, value, ok := strings.Cut(l.text, " ")
		if k, v, ok2 := strings.Cut(l.text, "\t"); ok2 && (!ok || len(k) < len(key)) {
			key, value, ok = k, v, true
		}
		if !ok || strings.TrimSpace(value) == "" {
			errs = append(errs, fmt.Sprintf("line %d: %q has no policy value (want `key level [attr=value ...]`)", l.line, key))
			continue
		}
		nk, err := NormalizeKey(key)
		if err != nil {
			errs = append(errs, fmt.Sprintf("line %d: %v", l.line, err))
			continue
		}
		p, err := ParsePolicy(strings.TrimSpace(value))
		if err != nil {
			errs = append(errs, fmt.Sprintf("line %d: %v", l.line, err))
			continue
		}
		if prev, dup := seen[nk]; dup {
			errs = append(errs, fmt.Sprintf("line %d: duplicate key %q (first on line %d)", l.line, nk, prev))
			continue
		}
		seen[nk] = l.line
		out = append(out, TableEntry{Line: l.line, Key: nk, Value: p.String()})
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrBadTable, strings.Join(errs, "; "))
	}
	return out, nil
}

// WriteTable writes entries in the same source format that ReadTable reads.
func WriteTable(w io.Writer, entries []TableEntry, header string) error {
	bw := bufio.NewWriter(w)
	if header != "" {
		for _, l := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
			fmt.Fprintf(bw, "# %s\n", l)
		}
	}
	width := 0
	for _, e := range entries {
		if len(e.Key) > width {
			width = len(e.Key)
		}
	}
	for _, e := range entries {
		fmt.Fprintf(bw, "%-*s %s\n", width, e.Key, e.Value)
	}
	return bw.Flush()
}
