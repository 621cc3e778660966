package overrides

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/mailtls/mailtls/output"
)

// overrideJSON is one override in `policy list --format json`.
type overrideJSON struct {
	Key     string  `json:"key"`
	Policy  string  `json:"policy"`
	Note    string  `json:"note"`
	Created string  `json:"created"`
	Updated string  `json:"updated"`
	Expires *string `json:"expires"`
	Expired bool    `json:"expired"`
}

// List is `policy list`: every override, in format table, json or csv,
// those expired at now marked so.
func List(ctx context.Context, st Store, format string, now time.Time, w io.Writer) error {
	ovs, err := st.Overrides(ctx)
	if err != nil {
		return err
	}
	if format == "json" {
		out := make([]overrideJSON, 0, len(ovs))
		for _, o := range ovs {
			j := overrideJSON{Key: o.Key, Policy: o.Policy, Note: o.Note, Created: o.Created.UTC().Format(time.RFC3339), Updated: o.Updated.UTC().Format(time.RFC3339)}
			if !o.Expires.IsZero() {
				s := o.Expires.UTC().Format(time.RFC3339)
				j.Expires, j.Expired = &s, o.Expired(now)
			}
			out = append(out, j)
		}
		return output.JSON(w, out)
	}
	if len(ovs) == 0 && format == "table" {
		_, err := fmt.Fprintln(w, "No overrides set: every destination gets the default answer (see `mailtls policy set --help`).")
		return err
	}
	t := output.NewTable("KEY", "POLICY", "EXPIRES", "UPDATED", "NOTE")
	for _, o := range ovs {
		exp := "-"
		if !o.Expires.IsZero() {
			exp = output.Time(o.Expires)
			if o.Expired(now) {
				exp += " (expired)"
			}
		}
		t.Add(o.Key, o.Policy, exp, output.Time(o.Updated), o.Note)
	}
	return t.Write(w, format)
}

// changeJSON is one change in `policy history --format json`.
type changeJSON struct {
	At    string  `json:"at"`
	Key   string  `json:"key"`
	Old   *string `json:"old"`
	New   *string `json:"new"`
	Actor string  `json:"actor"`
	Note  string  `json:"note"`
}

// History is `policy history [KEY]`: the changes of key ("" every key),
// in format table, json or csv.
func History(ctx context.Context, st Store, key, format string, w io.Writer) error {
	hist, err := st.History(ctx, key)
	if err != nil {
		return err
	}
	if format == "json" {
		out := make([]changeJSON, 0, len(hist))
		for _, h := range hist {
			j := changeJSON{At: h.At.UTC().Format(time.RFC3339), Key: h.Key, Actor: h.Actor, Note: h.Note}
			if h.Old != "" {
				j.Old = &h.Old
			}
			if h.New != "" {
				j.New = &h.New
			}
			out = append(out, j)
		}
		return output.JSON(w, out)
	}
	if len(hist) == 0 && format == "table" {
		_, err := fmt.Fprintln(w, "No changes recorded.")
		return err
	}
	t := output.NewTable("WHEN", "KEY", "OLD", "NEW", "BY")
	for _, h := range hist {
		t.Add(output.Time(h.At), h.Key, dash(h.Old), dash(h.New), h.Actor)
	}
	return t.Write(w, format)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
