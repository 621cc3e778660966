package output

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Table is the one output helper every command uses: a header, rows of
// cells, rendered as an aligned text table or CSV. Cells go through Escape
// as they are added: they hold log data and database contents, which must
// not reach the terminal as control sequences.
type Table struct {
	header []string
	rows   [][]string
	// right marks columns (by index) that are right-aligned (numbers).
	right map[int]bool
}

// NewTable is a table with these column names.
func NewTable(header ...string) *Table {
	return &Table{header: EscapeCells(header), right: map[int]bool{}}
}

// AlignRight right-aligns the columns cols (by index) of the text table.
func (t *Table) AlignRight(cols ...int) *Table {
	for _, c := range cols {
		t.right[c] = true
	}
	return t
}

// Add appends a row.
func (t *Table) Add(cells ...string) { t.rows = append(t.rows, EscapeCells(cells)) }

// Len is the number of rows.
func (t *Table) Len() int { return len(t.rows) }

// WriteText renders an aligned table with two spaces between columns.
func (t *Table) WriteText(w io.Writer) error {
	width := make([]int, len(t.header))
	measure := func(row []string) {
		for i, c := range row {
			if i < len(width) {
				width[i] = max(width[i], utf8.RuneCountInString(c))
			}
		}
	}
	measure(t.header)
	for _, r := range t.rows {
		measure(r)
	}
	var out strings.Builder
	t.line(&out, width, t.header)
	for _, r := range t.rows {
		t.line(&out, width, r)
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// line writes one row of the text table, without trailing blanks when the
// last cells are empty.
func (t *Table) line(out *strings.Builder, width []int, row []string) {
	var b strings.Builder
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
	out.WriteString(strings.TrimRight(b.String(), " "))
	out.WriteString("\n")
}

// WriteCSV renders the table as CSV, header first.
func (t *Table) WriteCSV(w io.Writer) error {
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

// Write renders the table in the given format ("csv", else text).
func (t *Table) Write(w io.Writer, format string) error {
	if format == "csv" {
		return t.WriteCSV(w)
	}
	return t.WriteText(w)
}

// JSON writes v as indented JSON, without HTML escaping.
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Itoa is n in decimal, without separators (CSV and JSON-like cells).
func Itoa(n int64) string { return fmt.Sprintf("%d", n) }

// Pct is f as a percentage with one decimal.
func Pct(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }

// Time is t in local time to the minute, or "-" when zero.
func Time(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

// Truncate shortens s to n runes, the last one an ellipsis.
func Truncate(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// Bytes is n bytes in B, KiB, MiB or GiB, one decimal above bytes.
func Bytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
