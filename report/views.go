package report

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/output"
	"github.com/mailtls/mailtls/store"
)

// The reading commands (`report`, its subcommands, `suggest`,
// `deliveries`) as views: the checks of their flags (one Check function
// per command, its errors ErrBadInput) and the writing of each view from
// the store. The command reads the flags into Flags, checks --format
// first and opens the store; nothing here knows the command line parser.

// Flags are a reading command's flags as given.
type Flags struct {
	Format               string
	Since, Until, Domain string
	// Host is --host as the command checked it; HostErr is its refusal,
	// reported in its turn (after the window's errors).
	Host            string
	HostErr         error
	IncludeInternal bool
	By, Sort        string // report
	Top             int    // report
	// suggest
	MinDeliveries, MinDays int
	Apply                  bool
	Getenv                 func(string) string // for the actor of --apply
	IsSet                  func(name string) bool
	Now                    time.Time
}

// Store is what the views read, and suggest --apply writes.
type Store interface {
	Source
	PolicySource
	SuggestSource
	HorizonSource
	Deliveries(ctx context.Context, f store.Filter, fn func(delivery.Delivery) error) error
}

var _ Store = (*store.Store)(nil)

// Run writes a checked view from st to out, and its warnings to errw,
// with the notes of FitToHorizon where mailtls prune narrowed its window.
type Run func(ctx context.Context, st Store, out, errw io.Writer) error

// view is a command's flags with its window resolved.
type view struct {
	Flags
	w store.Window
}

// window is the window of report and its subcommands (default 7 days).
func (f Flags) window() (view, error) {
	w, err := Query{Since: f.Since, Until: f.Until, Domain: f.Domain}.Window(f.Now, "7d", "--")
	if err != nil {
		return view{}, err
	}
	w.IncludeInternal, w.Host = f.IncludeInternal, f.Host
	return view{f, w}, f.HostErr
}

// CheckReport checks `report`'s flags, refusing the combinations that
// make no sense.
func CheckReport(f Flags) (Run, error) {
	v, err := f.window()
	if err != nil {
		return nil, err
	}
	html := f.Format == "html"
	switch order := f.Sort; {
	case html && (f.IsSet("by") || f.IsSet("top") || f.IsSet("sort")):
		return nil, inputErrorf("--format html is the whole report on one page; drop --by, --top and --sort")
	case html && v.w.Host != "":
		return nil, inputErrorf("--format html covers the whole fleet; drop --host (or use --format table, json or csv)")
	case f.Top < 0:
		return nil, inputErrorf("--top must be 0 or more")
	case f.By != "" && !slices.Contains(store.ReportDimensions, f.By):
		return nil, inputErrorf("invalid --by %q (want one of %s)", f.By, strings.Join(store.ReportDimensions, ", "))
	case !slices.Contains(SortOrders, order):
		return nil, inputErrorf("invalid --sort %q (want sent, plaintext, coverage or key)", order)
	case f.IsSet("sort") && f.By == "":
		return nil, inputErrorf("--sort orders the rows of --by; add e.g. --by domain")
	case order != "sent" && (f.By == "day" || f.By == "hour"):
		return nil, inputErrorf("--sort does not apply to --by %s: its rows are in time order", f.By)
	}
	return v.report, nil
}

func (v view) report(ctx context.Context, st Store, out, errw io.Writer) error {
	w, err := FitToHorizon(ctx, st, v.w, v.By == "hour" && v.w.Domain != "", errw)
	if err != nil {
		return err
	}
	switch {
	case v.By != "":
		rows, err := LoadRows(ctx, st, w, v.By, v.Sort, v.Top)
		if err != nil {
			return err
		}
		return WriteRows(out, v.Format, v.By, w, rows)
	case v.Format == "html":
		d, err := Load(ctx, st, v.w) // narrows it as fit did, and says so on the page
		if err != nil {
			return err
		}
		return WriteHTML(out, d)
	}
	s, err := st.Summary(ctx, w)
	if err != nil {
		return err
	}
	warns, err := st.ForcedPlaintextIn(ctx, w)
	if err != nil {
		return err
	}
	if err := WriteSummary(out, v.Format, w, s); err != nil {
		return err
	}
	WriteWarnings(errw, warns)
	return nil
}

// CheckDowngrades checks `report downgrades`' flags.
func CheckDowngrades(f Flags) (Run, error) {
	v, err := f.window()
	return v.downgrades, err
}

func (v view) downgrades(ctx context.Context, st Store, out, errw io.Writer) error {
	w, err := FitToHorizon(ctx, st, v.w, true, errw)
	if err != nil {
		return err
	}
	ds, err := st.Downgrades(ctx, w)
	if err != nil {
		return err
	}
	return WriteDowngrades(out, v.Format, w, ds)
}

// CheckOverrides checks `report overrides`' flags.
func CheckOverrides(f Flags) (Run, error) {
	v, err := f.window()
	return v.overrides, err
}

func (v view) overrides(ctx context.Context, st Store, out, errw io.Writer) error {
	w, err := FitToHorizon(ctx, st, v.w, false, errw)
	if err != nil {
		return err
	}
	rows, err := LoadOverrides(ctx, st, w, time.Now())
	if err != nil {
		return err
	}
	warns, err := st.ForcedPlaintextIn(ctx, w)
	if err != nil {
		return err
	}
	if err := WriteOverrides(out, v.Format, rows, warns); err != nil || v.Format == "json" {
		return err
	}
	WriteWarnings(errw, warns)
	return nil
}

// CheckPolicies checks `report policies`' flags: it reads every cached
// destination, so it takes no --domain.
func CheckPolicies(f Flags) (Run, error) {
	v, err := f.window()
	if err == nil && v.w.Domain != "" {
		err = inputErrorf("report policies checks every cached destination; drop --domain")
	}
	return v.policies, err
}

func (v view) policies(ctx context.Context, st Store, out, _ io.Writer) error {
	ps, err := LoadPolicies(ctx, st, v.w)
	if err != nil {
		return err
	}
	return WritePolicies(out, v.Format, ps)
}

// CheckSuggest checks `suggest`'s flags.
func CheckSuggest(f Flags) (Run, error) {
	if f.MinDeliveries < 1 || f.MinDays < 1 {
		return nil, inputErrorf("--min-deliveries and --min-days must be at least 1")
	}
	return view{Flags: f}.suggest, nil
}

func (v view) suggest(ctx context.Context, st Store, out, _ io.Writer) error {
	q := SuggestQuery{MinDeliveries: v.MinDeliveries, MinDays: v.MinDays, IncludeInternal: v.IncludeInternal}
	todo, err := Suggestions(ctx, st, q, time.Now())
	if err != nil {
		return err
	}
	if v.Format == "json" && !v.Apply {
		return WriteSuggestionsJSON(out, todo)
	}
	if err := WriteSuggestions(out, v.Format, q, todo); err != nil || len(todo) == 0 {
		return err
	}
	if !v.Apply {
		if v.Format == "table" {
			fmt.Fprintln(out, "\nNothing changed. Re-run with --apply to set these overrides.")
		}
		return nil
	}
	if err := ApplySuggestions(ctx, st, todo, store.Actor(v.Getenv)); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nApplied %d overrides.\n", len(todo))
	return nil
}

// CheckDeliveries checks `deliveries`' flags: its window is all time
// unless --since or --until bound it.
func CheckDeliveries(f Flags) (Run, error) {
	var v view
	if f.Since != "" || f.Until != "" {
		var err error
		if v.w.Since, v.w.Until, err = (Query{Since: f.Since, Until: f.Until}).Span(f.Now, "100000d", "--"); err != nil {
			return nil, err
		}
	}
	dom, err := Query{Domain: f.Domain}.DomainFilter("--")
	if err != nil {
		return nil, err
	}
	v.Flags, v.w.Domain, v.w.Host = f, dom, f.Host
	return v.deliveries, f.HostErr
}

func (v view) deliveries(ctx context.Context, st Store, out, errw io.Writer) error {
	if _, err := FitToHorizon(ctx, st, store.Window{Since: v.w.Since, Until: v.w.Until}, true, errw); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	defer bw.Flush()
	dw, err := output.NewDeliveryWriter(bw, v.Format)
	if err != nil {
		return err
	}
	err = st.Deliveries(ctx, store.Filter{Since: v.w.Since, Until: v.w.Until, Domain: v.w.Domain, Host: v.w.Host}, dw.Write)
	if ferr := dw.Flush(); err == nil {
		err = ferr
	}
	return err
}
