package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
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

func describeWindow(w store.Window) string {
	s := fmt.Sprintf("%s to %s", fmtTime(w.Since), fmtTime(w.Until))
	if w.Domain != "" {
		s += ", domain " + w.Domain
	}
	if w.Host != "" {
		s += ", host " + w.Host
	}
	return s
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
			format := c.String("format")
			if err := checkFormat(format, "table", "json", "csv", "html"); err != nil {
				return err
			}
			w, err := reportWindow(c)
			if err != nil {
				return err
			}
			if format == "html" && (c.IsSet("by") || c.IsSet("top") || c.IsSet("sort")) {
				return usageErrorf("--format html is the whole report on one page; drop --by, --top and --sort")
			}
			if format == "html" && w.Host != "" {
				return usageErrorf("--format html covers the whole fleet; drop --host (or use --format table, json or csv)")
			}
			if c.Int("top") < 0 {
				return usageErrorf("--top must be 0 or more")
			}
			by := c.String("by")
			if by != "" {
				if !slices.Contains(store.ReportDimensions, by) {
					return usageErrorf("invalid --by %q (want one of %s)", by, strings.Join(store.ReportDimensions, ", "))
				}
			}
			switch order := c.String("sort"); {
			case !slices.Contains(report.SortOrders, order):
				return usageErrorf("invalid --sort %q (want sent, plaintext, coverage or key)", order)
			case c.IsSet("sort") && by == "":
				return usageErrorf("--sort orders the rows of --by; add e.g. --by domain")
			case order != "sent" && (by == "day" || by == "hour"):
				return usageErrorf("--sort does not apply to --by %s: its rows are in time order", by)
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
			if by != "" {
				rows, err := report.LoadRows(c.Context, st, w, by, c.String("sort"), c.Int("top"))
				if err != nil {
					return err
				}
				return writeRows(e.stdout, format, by, w, rows)
			}
			if format == "html" {
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
			if err := writeSummary(e.stdout, format, w, s); err != nil {
				return err
			}
			printForcedPlaintext(e.stderr, warns)
			return nil
		},
	}
}

func writeSummary(w io.Writer, format string, win store.Window, s store.Summary) error {
	switch format {
	case "json":
		return writeJSON(w, report.NewSummary(s))
	case "csv":
		t := newTable("metric", "value")
		j := report.NewSummary(s)
		t.add("deliveries", itoa(j.Deliveries))
		t.add("encrypted", itoa(j.Encrypted))
		t.add("plaintext", itoa(j.Plaintext))
		t.add("unknown", itoa(j.Unknown))
		t.add("fallback", itoa(j.Fallback))
		t.add("coverage", string(j.Coverage))
		for _, k := range sortedKeys(j.ByTrust) {
			t.add("by_trust."+k, itoa(j.ByTrust[k]))
		}
		for _, k := range sortedKeys(j.ByProtocol) {
			t.add("by_protocol."+k, itoa(j.ByProtocol[k]))
		}
		t.add("deferred", itoa(j.Deferred))
		t.add("tls_deferred", itoa(j.TLSDeferred))
		t.add("bounced", itoa(j.Bounced))
		t.add("domains", itoa(j.Domains))
		t.add("domains_all_tls", itoa(j.DomainsAllTLS))
		t.add("domains_any_plaintext", itoa(j.DomainsAnyPlaintext))
		t.add("internal", itoa(j.Internal))
		return t.writeCSV(w)
	}
	fmt.Fprintf(w, "TLS coverage, %s\n\n", describeWindow(win))
	if s.Deliveries == 0 && s.Deferred == 0 && s.Bounced == 0 && s.Expired == 0 {
		if s.Internal > 0 {
			fmt.Fprintf(w, "No outbound deliveries recorded in this window; %s.\n", internalLine(s.Internal, false))
			return nil
		}
		fmt.Fprintln(w, "No deliveries recorded in this window.")
		fmt.Fprintln(w, "(Is `mailtls run` or `mailtls follow` reading the mail log? Try a wider --since.)")
		return nil
	}
	t := newTable("", "", "").alignRight(1)
	known := s.Encrypted + s.Plaintext
	t.add("Delivered (sent)", num(s.Deliveries), "")
	t.add("  encrypted", num(s.Encrypted), fmt.Sprintf("%s of known", pct(s.Coverage)))
	t.add("  plaintext", num(s.Plaintext), share(s.Plaintext, known))
	t.add("    no STARTTLS", num(s.PlaintextNoStartTLS), "receiver offered no TLS")
	t.add("    fallback", num(s.Fallback), "TLS handshake failed, then sent in plaintext")
	note := ""
	if s.Unknown > 0 {
		note = "no TLS log line (smtp_tls_loglevel = 0?)"
	}
	t.add("  unknown", num(s.Unknown), note)
	t.add("Deferred", num(s.Deferred), "")
	t.add("  caused by TLS", num(s.TLSDeferred), "4.7.x with a TLS reason")
	t.add("Bounced", num(s.Bounced), "")
	if s.Expired > 0 {
		t.add("Expired", num(s.Expired), "")
	}
	var b strings.Builder
	if err := t.writeText(&b); err != nil {
		return err
	}
	// Drop the empty header line.
	text := b.String()
	if i := strings.IndexByte(text, '\n'); i >= 0 {
		text = text[i+1:]
	}
	fmt.Fprint(w, text)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Trust      %s\n", splitLine(s.ByTrust, []string{"verified", "trusted", "untrusted", "anonymous"}))
	fmt.Fprintf(w, "Protocol   %s\n", splitLine(s.ByProtocol, nil))
	fmt.Fprintf(w, "Domains    %s total, %s all TLS, %s with plaintext\n", num(s.Domains), num(s.DomainsAllTLS), num(s.DomainsAnyPlaintext))
	if s.Internal > 0 {
		fmt.Fprintf(w, "\n%s.\n", upperFirst(internalLine(s.Internal, win.IncludeInternal)))
	}
	if s.DomainsAnyPlaintext > 0 {
		fmt.Fprintln(w, "\nWho got plaintext: `mailtls report --by domain --sort plaintext`, then `mailtls deliveries --domain D`.")
	}
	return nil
}

// internalLine says how many internal hops a report left out (or, with
// --include-internal, counted).
func internalLine(n int64, included bool) string {
	if included {
		return fmt.Sprintf("internal hops: %s, counted above (--include-internal)", num(n))
	}
	return fmt.Sprintf("internal hops: %s, not counted above (content filters, local LMTP; --include-internal counts them)", num(n))
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func share(n, of int64) string {
	if of == 0 {
		return ""
	}
	return pct(float64(n)/float64(of)) + " of known"
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}

// splitLine renders "verified 5,000  trusted 10" in the preferred order,
// then any other keys by count.
func splitLine(m map[string]int64, order []string) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	seen := map[string]bool{}
	for _, k := range order {
		if m[k] > 0 {
			parts = append(parts, k+" "+num(m[k]))
			seen[k] = true
		}
	}
	for _, k := range sortedKeys(m) {
		if !seen[k] {
			parts = append(parts, escapeControl(k)+" "+num(m[k])) // from the log
		}
	}
	return strings.Join(parts, "  ")
}

func writeRows(w io.Writer, format, by string, win store.Window, rows []store.Row) error {
	switch format {
	case "json":
		return writeJSON(w, report.NewRows(rows))
	case "csv":
		t := newTable("key", "deliveries", "encrypted", "plaintext", "coverage")
		for _, r := range report.NewRows(rows).Rows {
			t.add(r.Key, itoa(r.Deliveries), itoa(r.Encrypted), itoa(r.Plaintext), string(r.Coverage))
		}
		return t.writeCSV(w)
	}
	if len(rows) == 0 {
		fmt.Fprintf(w, "No deliveries recorded in this window (%s).\n", describeWindow(win))
		return nil
	}
	fmt.Fprintf(w, "TLS coverage by %s, %s\n\n", by, describeWindow(win))
	t := newTable(strings.ToUpper(by), "SENT", "ENCRYPTED", "PLAINTEXT", "COVERAGE").alignRight(1, 2, 3, 4)
	for _, r := range rows {
		cov := "-"
		if r.Encrypted+r.Plaintext > 0 {
			cov = pct(r.Coverage)
		}
		t.add(truncate(r.Key, 40), num(r.Deliveries), num(r.Encrypted), num(r.Plaintext), cov)
	}
	return t.writeText(w)
}

func truncate(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
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
			if format == "json" {
				return writeJSON(e.stdout, report.NewDowngrades(ds))
			}
			if len(ds) == 0 && format == "table" {
				fmt.Fprintf(e.stdout, "No downgrades in this window (%s).\n", describeWindow(w))
				return nil
			}
			t := newTable("DOMAIN", "FIRST SEEN", "LAST SEEN", "COUNT", "LAST TLS").alignRight(3)
			for _, d := range ds {
				last := fmt.Sprintf("%s %s %s", fmtTime(d.LastTLSAt), d.LastTLSProtocol, d.LastTLSTrust)
				t.add(truncate(d.Domain, 28), fmtTime(d.FirstSeen), fmtTime(d.LastSeen), num(d.Count), last)
			}
			return t.write(e.stdout, format)
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
			if format == "json" {
				return writeJSON(e.stdout, report.Overrides{Rows: rows, Warnings: report.NewWarnings(warns)})
			}
			if len(rows) == 0 && format == "table" {
				fmt.Fprintln(e.stdout, "No overrides set (see `mailtls policy set --help`).")
				printForcedPlaintext(e.stderr, warns)
				return nil
			}
			t := newTable("KEY", "POLICY", "IN FORCE SINCE", "SENT", "ENCRYPTED", "PLAINTEXT", "DEFERRED", "TLS-DEFERRED", "BOUNCED").alignRight(3, 4, 5, 6, 7, 8)
			for _, r := range rows {
				since := "expired"
				if t, err := time.Parse(time.RFC3339, r.InForceSince); err == nil {
					since = fmtTime(t)
					if format == "csv" {
						since = r.InForceSince
					}
				} else if format == "csv" {
					since = ""
				}
				t.add(truncate(r.Key, 28), truncate(r.Policy, 24), since, num(r.Sent), num(r.Encrypted), num(r.Plaintext), num(r.Deferred), num(r.TLSDeferred), num(r.Bounced))
			}
			if err := t.write(e.stdout, format); err != nil {
				return err
			}
			printForcedPlaintext(e.stderr, warns)
			return nil
		},
	}
}

// printForcedPlaintext writes each warning as a "mailtls: warning:" line.
func printForcedPlaintext(w io.Writer, ws []store.ForcedPlaintext) {
	for _, x := range ws {
		fmt.Fprintln(w, "mailtls: warning: "+escapeControl(report.WarningMessage(x)))
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
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			sugg, err := st.Suggest(c.Context, c.Int("min-deliveries"), c.Int("min-days"), time.Now(), c.Bool("include-internal"))
			if err != nil {
				return err
			}
			ovs, err := st.Overrides(c.Context)
			if err != nil {
				return err
			}
			have := map[string]bool{}
			for _, o := range ovs {
				have[o.Key] = true
			}
			var todo []store.Suggestion
			for _, s := range sugg {
				if !have[s.Domain] {
					todo = append(todo, s)
				}
			}
			if format == "json" && !c.Bool("apply") {
				type sj struct {
					Domain     string `json:"domain"`
					Level      string `json:"level"`
					Deliveries int64  `json:"deliveries"`
					Days       int64  `json:"days"`
					FirstSeen  string `json:"first_seen"`
					LastSeen   string `json:"last_seen"`
				}
				out := make([]sj, 0, len(todo))
				for _, s := range todo {
					out = append(out, sj{s.Domain, s.Level, s.Deliveries, s.Days, report.RFC3339(s.FirstSeen), report.RFC3339(s.LastSeen)})
				}
				return writeJSON(e.stdout, map[string]any{"suggestions": out})
			}
			if len(todo) == 0 {
				fmt.Fprintf(e.stdout, "Nothing to suggest: no destination without an override has %d+ all-encrypted deliveries over %d+ days.\n",
					c.Int("min-deliveries"), c.Int("min-days"))
				return nil
			}
			t := newTable("DOMAIN", "SUGGEST", "DELIVERIES", "DAYS", "LAST SEEN").alignRight(2, 3)
			for _, s := range todo {
				t.add(s.Domain, s.Level, num(s.Deliveries), itoa(s.Days), fmtTime(s.LastSeen))
			}
			if err := t.write(e.stdout, format); err != nil {
				return err
			}
			if !c.Bool("apply") {
				if format == "table" {
					fmt.Fprintln(e.stdout, "\nNothing changed. Re-run with --apply to set these overrides.")
				}
				return nil
			}
			actor := store.Actor(e.getenv)
			for _, s := range todo {
				o := store.Override{Key: s.Domain, Policy: s.Level,
					Note: fmt.Sprintf("suggested by mailtls: %d deliveries over %d days, all encrypted", s.Deliveries, s.Days)}
				if err := st.SetOverride(c.Context, o, actor); err != nil {
					return err
				}
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
	days := int(time.Since(since).Hours()/24 + 0.5)
	fmt.Fprintf(e.stdout, "In the last %d days, %s deliveries to %s", days, num(r.Deliveries), key)
	switch p.Level {
	case "encrypt", "dane-only", "fingerprint":
		fmt.Fprintf(e.stdout, "; %s plaintext and would have been deferred.\n", wasWere(r.Plaintext))
	case "verify", "secure":
		fmt.Fprintf(e.stdout, "; %s plaintext and %s an unverified certificate: %s would have been deferred.\n",
			wasWere(r.Plaintext), usedN(r.Unverified), num(r.WouldDefer))
	default:
		fmt.Fprintf(e.stdout, "; %s would not defer any of them.\n", p.Level)
	}
	fmt.Fprintln(e.stdout, "Nothing changed (--dry-run).")
	return nil
}

func wasWere(n int64) string {
	if n == 1 {
		return "1 was"
	}
	return num(n) + " were"
}

func usedN(n int64) string {
	return num(n) + " used"
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
			if format == "json" {
				return writeJSON(e.stdout, ps)
			}
			if len(ps.Rows) == 0 && format == "table" {
				fmt.Fprintln(e.stdout, "No cached DANE or MTA-STS policy (the daemon caches them with --sources dane,mta-sts).")
				return nil
			}
			t := newTable("DOMAIN", "SOURCE", "MODE", "DELIVERIES", "WOULD FAIL", "WORST MX", "REASON").alignRight(3, 4)
			for _, r := range ps.Rows {
				mx, why := "", ""
				if len(r.Problems) > 0 {
					mx, why = r.Problems[0].MX, r.Problems[0].Reason
				}
				t.add(truncate(r.Domain, 28), r.Source, r.Mode, num(r.Deliveries), num(r.WouldFail), truncate(mx, 28), why)
			}
			if err := t.write(e.stdout, format); err != nil {
				return err
			}
			if format == "table" {
				sep := "\n"
				for _, r := range ps.Rows {
					for _, p := range r.Problems {
						fmt.Fprint(e.stdout, sep)
						sep = ""
						fmt.Fprintln(e.stdout, escapeControl(p.Message))
					}
				}
			}
			return nil
		},
	}
}
