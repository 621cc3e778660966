package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/report"
	"github.com/mailtls/mailtls/store"
)

// domainFilter validates --domain: example.com or *.example.com.
func domainFilter(s string) (string, error) {
	return report.Query{Domain: s}.DomainFilter("--")
}

func reportWindow(c *cli.Context) (store.Window, error) {
	q := report.Query{Since: c.String("since"), Until: c.String("until"), Domain: c.String("domain")}
	w, err := q.Window(time.Now(), "7d", "--")
	if err != nil {
		return w, err
	}
	w.IncludeInternal = c.Bool("include-internal")
	if c.Command.Name == "report" { // its subcommands take no --host
		w.Host, err = hostFilter(c)
	}
	return w, err
}

// includeInternalFlag is --include-internal, for the reports.
func includeInternalFlag() cli.Flag {
	return &cli.BoolFlag{Name: "include-internal", Usage: "count internal hops too (content filters on 127.0.0.1/::1, LMTP over unix sockets, --internal-relays); left out by default"}
}

func reportCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "report",
		Usage: "TLS coverage of outbound mail",
		UsageText: "mailtls report                       # last 7 days\n" +
			"mailtls report --since 24h --by domain --top 20\n" +
			"mailtls report --by domain --sort plaintext --top 20   # who got plaintext\n" +
			"mailtls report --since 2026-11-01 --until 2026-12-01 --format json\n" +
			"mailtls report --domain '*.example.com' --by day\n" +
			"mailtls report --by host              # every fleet host; --host NAME for one\n" +
			"mailtls report --since 30d --format html > tls.html   # one self-contained page with charts\n" +
			"mailtls report downgrades | overrides",
		Flags: append(windowFlags("7d"), includeInternalFlag(), hostFilterFlag(),
			&cli.StringFlag{Name: "by", Usage: "break down by `KEY`: " + strings.Join(store.ReportDimensions, "|")},
			&cli.IntFlag{Name: "top", Value: 0, Usage: "show only the first `N` rows of --by (0 = all)"},
			&cli.StringFlag{Name: "sort", Value: "sent", Usage: "order the rows of --by (not day or hour) by `ORDER`: sent, plaintext (most first), coverage (worst first) or key"},
			formatFlag("table", "table|json|csv|html")),
		Subcommands: []*cli.Command{downgradesCommand(e), overridesReportCommand(e), policiesReportCommand(e)},
		Action:      func(c *cli.Context) error { return runReport(c, e) },
	}
}

// checkReportFlags refuses the combinations of report's flags that make no
// sense; it returns --by.
func checkReportFlags(c *cli.Context, format string, w store.Window) (string, error) {
	if format == "html" && (c.IsSet("by") || c.IsSet("top") || c.IsSet("sort")) {
		return "", usageErrorf("--format html is the whole report on one page; drop --by, --top and --sort")
	}
	if format == "html" && w.Host != "" {
		return "", usageErrorf("--format html covers the whole fleet; drop --host (or use --format table, json or csv)")
	}
	if c.Int("top") < 0 {
		return "", usageErrorf("--top must be 0 or more")
	}
	by := c.String("by")
	if by != "" && !slices.Contains(store.ReportDimensions, by) {
		return "", usageErrorf("invalid --by %q (want one of %s)", by, strings.Join(store.ReportDimensions, ", "))
	}
	switch order := c.String("sort"); {
	case !slices.Contains(report.SortOrders, order):
		return "", usageErrorf("invalid --sort %q (want sent, plaintext, coverage or key)", order)
	case c.IsSet("sort") && by == "":
		return "", usageErrorf("--sort orders the rows of --by; add e.g. --by domain")
	case order != "sent" && (by == "day" || by == "hour"):
		return "", usageErrorf("--sort does not apply to --by %s: its rows are in time order", by)
	}
	return by, nil
}

func runReport(c *cli.Context, e env) error {
	if c.Args().Present() {
		return usageErrorf("unknown report %q (want downgrades or overrides, or flags only)", c.Args().First())
	}
	format := c.String("format")
	if err := checkFormat(format, "table", "json", "csv", "html"); err != nil {
		return err
	}
	w, err := reportWindow(c)
	if err != nil {
		return err
	}
	by, err := checkReportFlags(c, format, w)
	if err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	asked := w
	if w, err = fitToHorizon(c.Context, e, st, w, by == "hour" && w.Domain != ""); err != nil {
		return err
	}
	switch {
	case by != "":
		rows, err := report.LoadRows(c.Context, st, w, by, c.String("sort"), c.Int("top"))
		if err != nil {
			return err
		}
		return report.WriteRows(e.stdout, format, by, w, rows)
	case format == "html":
		d, err := report.Load(c.Context, st, asked) // narrows it as fitToHorizon did, and says so on the page
		if err != nil {
			return err
		}
		return report.WriteHTML(e.stdout, d)
	}
	s, err := st.Summary(c.Context, w)
	if err != nil {
		return err
	}
	warns, err := st.ForcedPlaintextIn(c.Context, w)
	if err != nil {
		return err
	}
	if err := report.WriteSummary(e.stdout, format, w, s); err != nil {
		return err
	}
	report.WriteWarnings(e.stderr, warns)
	return nil
}

func downgradesCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "downgrades",
		Usage: "destinations that had TLS before and then got plaintext or failed TLS",
		UsageText: "mailtls report downgrades --since 30d\n\n" +
			"A downgrade can mean STARTTLS stripping on the path, or a broken receiver.",
		Flags: append(windowFlags("7d"), includeInternalFlag(), formatFlag("table", "table|json|csv")),
		Action: func(c *cli.Context) error {
			format := c.String("format")
			if err := checkFormat(format, "table", "json", "csv"); err != nil {
				return err
			}
			w, err := reportWindow(c)
			if err != nil {
				return err
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			if w, err = fitToHorizon(c.Context, e, st, w, true); err != nil {
				return err
			}
			ds, err := st.Downgrades(c.Context, w)
			if err != nil {
				return err
			}
			return report.WriteDowngrades(e.stdout, format, w, ds)
		},
	}
}

func overridesReportCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "overrides",
		Usage: "deliveries and deferrals under each override while it was in force: which forced destinations fail?",
		UsageText: "mailtls report overrides --since 7d\n\n" +
			"Each override counts the deliveries it governed while it was in force (from the\n" +
			"override history), as the daemon matches keys: the domain's own key, else the\n" +
			"nearest .parent key. [host]:port keys are matched by the relay the log names.\n" +
			"Plaintext sent under encrypt, dane-only, fingerprint, verify or secure means\n" +
			"Postfix did not ask mailtls; it is printed as a warning.",
		Flags: append(windowFlags("7d"), includeInternalFlag(), formatFlag("table", "table|json|csv")),
		Action: func(c *cli.Context) error {
			format := c.String("format")
			if err := checkFormat(format, "table", "json", "csv"); err != nil {
				return err
			}
			w, err := reportWindow(c)
			if err != nil {
				return err
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			if w, err = fitToHorizon(c.Context, e, st, w, false); err != nil {
				return err
			}
			rows, err := report.LoadOverrides(c.Context, st, w, time.Now())
			if err != nil {
				return err
			}
			warns, err := st.ForcedPlaintextIn(c.Context, w)
			if err != nil {
				return err
			}
			if err := report.WriteOverrides(e.stdout, format, rows, warns); err != nil || format == "json" {
				return err
			}
			report.WriteWarnings(e.stderr, warns)
			return nil
		},
	}
}

func suggestCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "suggest",
		Usage: "destinations that could be forced to TLS safely, judged by history",
		UsageText: "mailtls suggest\n" +
			"mailtls suggest --min-deliveries 50 --min-days 14\n" +
			"mailtls suggest --apply            # write them as overrides\n\n" +
			"A destination qualifies when every delivery to it went out encrypted, over at\n" +
			"least --min-deliveries deliveries on --min-days distinct days. verify is\n" +
			"suggested when every session was Verified or Trusted, encrypt otherwise.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "min-deliveries", Value: 20, Usage: "at least `N` deliveries"},
			&cli.IntFlag{Name: "min-days", Value: 7, Usage: "spread over at least `D` distinct days"},
			&cli.BoolFlag{Name: "apply", Usage: "write the suggestions as overrides (otherwise nothing changes)"},
			includeInternalFlag(),
			formatFlag("table", "table|json|csv"),
		},
		Action: func(c *cli.Context) error {
			format := c.String("format")
			if err := checkFormat(format, "table", "json", "csv"); err != nil {
				return err
			}
			if c.Int("min-deliveries") < 1 || c.Int("min-days") < 1 {
				return usageErrorf("--min-deliveries and --min-days must be at least 1")
			}
			q := report.SuggestQuery{MinDeliveries: c.Int("min-deliveries"), MinDays: c.Int("min-days"), IncludeInternal: c.Bool("include-internal")}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			todo, err := report.Suggestions(c.Context, st, q, time.Now())
			if err != nil {
				return err
			}
			if format == "json" && !c.Bool("apply") {
				return report.WriteSuggestionsJSON(e.stdout, todo)
			}
			if err := report.WriteSuggestions(e.stdout, format, q, todo); err != nil || len(todo) == 0 {
				return err
			}
			if !c.Bool("apply") {
				if format == "table" {
					fmt.Fprintln(e.stdout, "\nNothing changed. Re-run with --apply to set these overrides.")
				}
				return nil
			}
			if err := report.ApplySuggestions(c.Context, st, todo, store.Actor(e.getenv)); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "\nApplied %d overrides.\n", len(todo))
			return nil
		},
	}
}

// policyDryRun answers "what would this override have done?" from history.
func policyDryRun(c *cli.Context, e env, st *store.Store, key string, p policyd.Policy) error {
	since, err := parseWhen(c.String("since"), time.Now())
	if err != nil {
		return usageErrorf("--since: %v", err)
	}
	r, err := st.DryRun(c.Context, key, p.Level, since)
	if err != nil {
		return err
	}
	report.WriteDryRun(e.stdout, key, p.Level, int(time.Since(since).Hours()/24+0.5), r)
	return nil
}

func policiesReportCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "policies",
		Usage: "published MTA-STS and DANE policies checked against recorded deliveries: which would fail?",
		UsageText: "mailtls report policies --since 7d\n\n" +
			"For each destination whose cached published answer is DANE or an MTA-STS policy\n" +
			"(enforce or testing), the deliveries recorded to it in the window that would have\n" +
			"been deferred under that policy: a relay matching no MTA-STS mx pattern, an\n" +
			"Untrusted or Anonymous certificate or plaintext where MTA-STS demands a valid\n" +
			"certificate, a failed certificate verification at an MX with DANE TLSA records.\n" +
			"For testing policies: what enforce would have deferred. The cache is filled by\n" +
			"the daemon (`mailtls serve` with --sources dane or mta-sts).",
		Flags: append(windowFlags("7d"), formatFlag("table", "table|json|csv")),
		Action: func(c *cli.Context) error {
			format := c.String("format")
			if err := checkFormat(format, "table", "json", "csv"); err != nil {
				return err
			}
			w, err := reportWindow(c)
			if err != nil {
				return err
			}
			if w.Domain != "" {
				return usageErrorf("report policies checks every cached destination; drop --domain")
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			ps, err := report.LoadPolicies(c.Context, st, w)
			if err != nil {
				return err
			}
			return report.WritePolicies(e.stdout, format, ps)
		},
	}
}
