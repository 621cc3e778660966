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
// logical line (at most maxTableLine bytes with its continuations). Every
// key and value is validated; the errors are returned together, the first
// maxTableErrors each naming its line and the others counted, so that a
// file is accepted whole or not at all.
func ReadTable(r io.Reader) ([]TableEntry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxTableLine)
	t := tableReader{seen: map[string]int{}}
	var (
		pending      string // the logical line being read, when on one line
		joined       []byte // the logical line being read, when continued
		continued    bool   // it is in joined
		pendingStart int    // its first line; 0: none
		tooLong      bool   // it has grown over maxTableLine: dropped
		n            int
	)
	flush := func() {
		switch {
		case pendingStart == 0 || tooLong:
		case continued:
			t.entry(pendingStart, string(joined))
		default:
			t.entry(pendingStart, pending)
		}
	}
	for sc.Scan() {
		n++
		raw := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if raw[0] == ' ' || raw[0] == '\t' {
			if pendingStart == 0 {
				return nil, fmt.Errorf("%w: line %d: continuation line with nothing to continue", ErrBadTable, n)
			}
			if tooLong {
				continue
			}
			if !continued {
				joined, continued = append(joined[:0], pending...), true
			}
			if len(joined)+1+len(trimmed) > maxTableLine {
				t.fail("line %d: the entry on line %d and its continuation lines are longer than %d bytes", n, pendingStart, maxTableLine)
				tooLong = true
				continue
			}
			joined = append(append(joined, ' '), trimmed...)
			continue
		}
		flush()
		pending, pendingStart, tooLong, continued = trimmed, n, false, false
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%w: line %d: longer than %d bytes", ErrBadTable, n+1, maxTableLine)
		}
		return nil, err
	}
	flush()
	if len(t.errs) > 0 {
		msg := strings.Join(t.errs, "; ")
		if t.more > 0 {
			msg += fmt.Sprintf("; and %d more bad lines", t.more)
		}
		return nil, fmt.Errorf("%w: %s", ErrBadTable, msg)
	}
	return t.out, nil
}

// maxTableErrors bounds the errors ReadTable reports one by one; the
// others are counted.
const maxTableErrors = 10

// tableReader validates the logical lines of a table file as they are
// read, so that a large file is held once, as its entries.
type tableReader struct {
	out  []TableEntry
	errs []string
	more int
	seen map[string]int // key → its line
}

func (t *tableReader) fail(format string, args ...any) {
	if len(t.errs) == maxTableErrors {
		t.more++
		return
	}
	t.errs = append(t.errs, fmt.Sprintf(format, args...))
}

// entry validates the logical line text that starts on line.
func (t *tableReader) entry(line int, text string) {
	key, value, ok := strings.Cut(text, " ")
	if k, v, ok2 := strings.Cut(text, "\t"); ok2 && (!ok || len(k) < len(key)) {
		key, value, ok = k, v, true
	}
	if !ok || strings.TrimSpace(value) == "" {
		t.fail("line %d: %q has no policy value (want `key level [attr=value ...]`)", line, key)
		return
	}
	nk, err := NormalizeKey(key)
	if err != nil {
		t.fail("line %d: %v", line, err)
		return
	}
	p, err := ParsePolicy(strings.TrimSpace(value))
	if err != nil {
		t.fail("line %d: %v", line, err)
		return
	}
	if prev, dup := t.seen[nk]; dup {
		t.fail("line %d: duplicate key %q (first on line %d)", line, nk, prev)
		return
	}
	t.seen[nk] = line
	t.out = append(t.out, TableEntry{Line: line, Key: nk, Value: p.String()})
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
