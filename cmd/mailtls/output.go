package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// table is the one output helper every command uses: a header, rows of cells,
// rendered as an aligned text table, CSV, or (via writeJSON) JSON. Cells go
// through escapeControl as they are added: they hold log data and database
// contents, which must not reach the terminal as control sequences.
type table struct {
	header []string
	rows   [][]string
	// right marks columns (by index) that are right-aligned (numbers).
	right map[int]bool
}

func newTable(header ...string) *table {
	return &table{header: escapeCells(header), right: map[int]bool{}}
}

func (t *table) alignRight(cols ...int) *table {
	for _, c := range cols {
		t.right[c] = true
	}
	return t
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, escapeCells(cells)) }

func escapeCells(cells []string) []string {
	out := make([]string, len(cells))
	for i, c := range cells {
		out[i] = escapeControl(c)
	}
	return out
}

// escapeControl returns s with everything that could move the cursor or
// reprogram a terminal written as a visible escape: C0 control bytes and
// DEL (\x1b, \r, \n, \t, ...), C1 controls (U+0080 to U+009F, \u009b is
// CSI on some terminals), Unicode bidirectional overrides and isolates
// (which reorder what is shown), and bytes that are not UTF-8 (\xNN; a raw
// 0x9b is CSI too). Everything else, backslashes included, is kept.
func escapeControl(s string) string {
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
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			b.WriteByte(c)
			i++
			continue
		}
		if c < 0x80 {
			fmt.Fprintf(&b, "\\x%02x", c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, "\\x%02x", c)
		case r >= 0x80 && r <= 0x9f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// writeText renders an aligned table with two spaces between columns.
func (t *table) writeText(w io.Writer) error {
	width := make([]int, len(t.header))
	measure := func(row []string) {
		for i, c := range row {
			if i < len(width) {
				if n := utf8.RuneCountInString(c); n > width[i] {
					width[i] = n
				}
			}
		}
	}
	measure(t.header)
	for _, r := range t.rows {
		measure(r)
	}
	var out strings.Builder
	line := func(row []string) {
		var b strings.Builder
		defer func() {
			// No trailing blanks when the last cells are empty.
			out.WriteString(strings.TrimRight(b.String(), " "))
			out.WriteString("\n")
		}()
		for i := range width {
			c := ""
			if i < len(row) {
				c = row[i]
			}
			pad := width[i] - utf8.RuneCountInString(c)
			last := i == len(width)-1
			if t.right[i] {
				b.WriteString(strings.Repeat(" ", pad))
				b.WriteString(c)
			} else {
				b.WriteString(c)
				if !last {
					b.WriteString(strings.Repeat(" ", pad))
				}
			}
			if !last {
				b.WriteString("  ")
			}
		}
	}
	line(t.header)
	for _, r := range t.rows {
		line(r)
	}
	_, err := io.WriteString(w, out.String())
	return err
}

func (t *table) writeCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(t.header); err != nil {
		return err
	}
	for _, r := range t.rows {
		if err := cw.Write(r); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// write renders the table in the given format ("table" or "csv").
func (t *table) write(w io.Writer, format string) error {
	switch format {
	case "csv":
		return t.writeCSV(w)
	default:
		return t.writeText(w)
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// checkFormat validates a --format value against the accepted set.
func checkFormat(got string, accepted ...string) error {
	for _, a := range accepted {
		if got == a {
			return nil
		}
	}
	return usageErrorf("invalid --format %q (want one of %s)", got, strings.Join(accepted, ", "))
}

func itoa(n int64) string { return fmt.Sprintf("%d", n) }

func pct(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }
