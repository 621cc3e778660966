package main

import (
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/report"
	"github.com/mailtls/mailtls/store"
)

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
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageErrorf("unknown report %q (want downgrades or overrides, or flags only)", c.Args().First())
			}
			return runView(c, e, report.CheckReport, "table", "json", "csv", "html")
		},
	}
}

// runView runs a reading command: --format checked against formats, the
// rest of its flags by check, then the view on the store, its window
// fitted to the horizon of pruned deliveries.
func runView(c *cli.Context, e env, check func(report.Flags) (report.Run, error), formats ...string) error {
	if err := checkFormat(c.String("format"), formats...); err != nil {
		return err
	}
	f := report.Flags{Format: c.String("format"), Since: c.String("since"), Until: c.String("until"), Domain: c.String("domain"),
		IncludeInternal: c.Bool("include-internal"), By: c.String("by"), Sort: c.String("sort"), Top: c.Int("top"),
		MinDeliveries: c.Int("min-deliveries"), MinDays: c.Int("min-days"), Apply: c.Bool("apply"), Getenv: e.getenv, IsSet: c.IsSet, Now: time.Now()}
	if slices.ContainsFunc(c.Command.Flags, func(fl cli.Flag) bool { return slices.Contains(fl.Names(), "host") }) {
		f.Host, f.HostErr = hostFilter(c)
	}
	run, err := check(f)
	if err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	return run(c.Context, st, e.stdout, e.stderr)
}

func downgradesCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "downgrades",
		Usage: "destinations that had TLS before and then got plaintext or failed TLS",
		UsageText: "mailtls report downgrades --since 30d\n\n" +
			"A downgrade can mean STARTTLS stripping on the path, or a broken receiver.",
		Flags:  append(windowFlags("7d"), includeInternalFlag(), formatFlag("table", "table|json|csv")),
		Action: func(c *cli.Context) error { return runView(c, e, report.CheckDowngrades, "table", "json", "csv") },
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
		Flags:  append(windowFlags("7d"), includeInternalFlag(), formatFlag("table", "table|json|csv")),
		Action: func(c *cli.Context) error { return runView(c, e, report.CheckOverrides, "table", "json", "csv") },
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
		Action: func(c *cli.Context) error { return runView(c, e, report.CheckSuggest, "table", "json", "csv") },
	}
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
		Flags:  append(windowFlags("7d"), formatFlag("table", "table|json|csv")),
		Action: func(c *cli.Context) error { return runView(c, e, report.CheckPolicies, "table", "json", "csv") },
	}
}
