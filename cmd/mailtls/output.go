package main

import (
	"io"
	"strings"

	"github.com/mailtls/mailtls/output"
	"github.com/mailtls/mailtls/report"
)

// The output vocabulary is package output; these are its names in the
// commands that have not been moved to it yet (check, policy, lookup,
// prune).
var (
	writeJSON      = output.JSON
	pct            = output.Pct
	describeWindow = report.DescribeWindow
)

// table is output.Table under the names check.go and policy.go use.
type table struct{ *output.Table }

func newTable(header ...string) *table { return &table{output.NewTable(header...)} }

func (t *table) alignRight(cols ...int) *table {
	t.AlignRight(cols...)
	return t
}

func (t *table) add(cells ...string)                    { t.Add(cells...) }
func (t *table) writeText(w io.Writer) error            { return t.WriteText(w) }
func (t *table) write(w io.Writer, format string) error { return t.Write(w, format) }

// checkFormat validates a --format value against the accepted set.
func checkFormat(got string, accepted ...string) error {
	for _, a := range accepted {
		if got == a {
			return nil
		}
	}
	return usageErrorf("invalid --format %q (want one of %s)", got, strings.Join(accepted, ", "))
}
