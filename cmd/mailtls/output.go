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
// rendered as an aligned text table, CSV, or (via writeJSON) JSON.
type table struct {
	header []string
	rows   [][]string
	// right marks columns (by index) that are right-aligned (numbers).
	right map[int]bool
}

func newTable(header ...string) *table { return &table{header: header, right: map[int]bool{}} }

func (t *table) alignRight(cols ...int) *table {
	for _, c := range cols {
		t.right[c] = true
	}
	return t
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

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
