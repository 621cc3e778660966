package report

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/output"
	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/store"
)

// The text (and CSV) renderings of the reports of the command line. The
// JSON views are the types of report.go; the tables are output's.

// trustOrder is the display order of trust levels, strongest first:
// delivery.Trusts reversed.
var trustOrder = func() []string {
	out := make([]string, 0, len(delivery.Trusts))
	for _, t := range slices.Backward(delivery.Trusts[:]) {
		out = append(out, string(t))
	}
	return out
}()

// DescribeWindow is the window as a report's heading names it.
func DescribeWindow(w store.Window) string {
	s := fmt.Sprintf("%s to %s", output.Time(w.Since), output.Time(w.Until))
	if w.Domain != "" {
		s += ", domain " + w.Domain
	}
	if w.Host != "" {
		s += ", host " + w.Host
	}
	return s
}

// WriteSummary renders `report` without --by as "json", "csv" or a text
// table.
func WriteSummary(w io.Writer, format string, win store.Window, s store.Summary) error {
	switch format {
	case "json":
		return output.JSON(w, NewSummary(s))
	case "csv":
		return summaryCSV(NewSummary(s)).WriteCSV(w)
	}
	fmt.Fprintf(w, "TLS coverage, %s\n\n", DescribeWindow(win))
	if s.Deliveries == 0 && s.Deferred == 0 && s.Bounced == 0 && s.Expired == 0 {
		if s.Internal > 0 {
			fmt.Fprintf(w, "No outbound deliveries recorded in this window; %s.\n", internalLine(s.Internal, false))
			return nil
		}
		fmt.Fprintln(w, "No deliveries recorded in this window.")
		fmt.Fprintln(w, "(Is `mailtls run` or `mailtls follow` reading the mail log? Try a wider --since.)")
		return nil
	}
	var b strings.Builder
	if err := summaryTable(s).WriteText(&b); err != nil {
		return err
	}
	// Drop the empty header line.
	text := b.String()
	if i := strings.IndexByte(text, '\n'); i >= 0 {
		text = text[i+1:]
	}
	fmt.Fprint(w, text)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Trust      %s\n", TrustLine(s.ByTrust))
	fmt.Fprintf(w, "Protocol   %s\n", splitLine(s.ByProtocol, nil))
	fmt.Fprintf(w, "Domains    %s total, %s all TLS, %s with plaintext\n", Num(s.Domains), Num(s.DomainsAllTLS), Num(s.DomainsAnyPlaintext))
	if s.Internal > 0 {
		fmt.Fprintf(w, "\n%s.\n", upperFirst(internalLine(s.Internal, win.IncludeInternal)))
	}
	if s.DomainsAnyPlaintext > 0 {
		fmt.Fprintln(w, "\nWho got plaintext: `mailtls report --by domain --sort plaintext`, then `mailtls deliveries --domain D`.")
	}
	return nil
}

// summaryCSV is the summary as metric,value rows, in the order of the
// JSON contract.
func summaryCSV(j Summary) *output.Table {
	t := output.NewTable("metric", "value")
	i := output.Itoa
	t.Add("deliveries", i(j.Deliveries))
	t.Add("encrypted", i(j.Encrypted))
	t.Add("plaintext", i(j.Plaintext))
	t.Add("unknown", i(j.Unknown))
	t.Add("fallback", i(j.Fallback))
	t.Add("coverage", string(j.Coverage))
	for _, k := range sortedKeys(j.ByTrust) {
		t.Add("by_trust."+k, i(j.ByTrust[k]))
	}
	for _, k := range sortedKeys(j.ByProtocol) {
		t.Add("by_protocol."+k, i(j.ByProtocol[k]))
	}
	t.Add("deferred", i(j.Deferred))
	t.Add("tls_deferred", i(j.TLSDeferred))
	t.Add("bounced", i(j.Bounced))
	t.Add("domains", i(j.Domains))
	t.Add("domains_all_tls", i(j.DomainsAllTLS))
	t.Add("domains_any_plaintext", i(j.DomainsAnyPlaintext))
	t.Add("internal", i(j.Internal))
	return t
}

// summaryTable is the body of the text summary (its header is empty).
func summaryTable(s store.Summary) *output.Table {
	t := output.NewTable("", "", "").AlignRight(1)
	known := s.Encrypted + s.Plaintext
	t.Add("Delivered (sent)", Num(s.Deliveries), "")
	t.Add("  encrypted", Num(s.Encrypted), fmt.Sprintf("%s of known", output.Pct(s.Coverage)))
	t.Add("  plaintext", Num(s.Plaintext), share(s.Plaintext, known))
	t.Add("    no STARTTLS", Num(s.PlaintextNoStartTLS), "receiver offered no TLS")
	t.Add("    fallback", Num(s.Fallback), "TLS handshake failed, then sent in plaintext")
	note := ""
	if s.Unknown > 0 {
		note = "no TLS log line (smtp_tls_loglevel = 0?)"
	}
	t.Add("  unknown", Num(s.Unknown), note)
	t.Add("Deferred", Num(s.Deferred), "")
	t.Add("  caused by TLS", Num(s.TLSDeferred), "4.7.x with a TLS reason")
	t.Add("Bounced", Num(s.Bounced), "")
	if s.Expired > 0 {
		t.Add("Expired", Num(s.Expired), "")
	}
	return t
}

// internalLine says how many internal hops a report left out (or, with
// --include-internal, counted).
func internalLine(n int64, included bool) string {
	if included {
		return fmt.Sprintf("internal hops: %s, counted above (--include-internal)", Num(n))
	}
	return fmt.Sprintf("internal hops: %s, not counted above (content filters, local LMTP; --include-internal counts them)", Num(n))
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
	return output.Pct(float64(n)/float64(of)) + " of known"
}

// sortedKeys lists m's keys by count (most first), then name.
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

// TrustLine renders sessions by trust, "verified 5,000  trusted 10",
// strongest first; "-" when there are none.
func TrustLine(m map[string]int64) string { return splitLine(m, trustOrder) }

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
			parts = append(parts, k+" "+Num(m[k]))
			seen[k] = true
		}
	}
	for _, k := range sortedKeys(m) {
		if !seen[k] {
			parts = append(parts, output.Escape(k)+" "+Num(m[k])) // from the log
		}
	}
	return strings.Join(parts, "  ")
}

// WriteRows renders `report --by` as "json", "csv" or a text table.
func WriteRows(w io.Writer, format, by string, win store.Window, rows []store.Row) error {
	switch format {
	case "json":
		return output.JSON(w, NewRows(rows))
	case "csv":
		t := output.NewTable("key", "deliveries", "encrypted", "plaintext", "coverage")
		for _, r := range NewRows(rows).Rows {
			t.Add(r.Key, output.Itoa(r.Deliveries), output.Itoa(r.Encrypted), output.Itoa(r.Plaintext), string(r.Coverage))
		}
		return t.WriteCSV(w)
	}
	if len(rows) == 0 {
		fmt.Fprintf(w, "No deliveries recorded in this window (%s).\n", DescribeWindow(win))
		return nil
	}
	fmt.Fprintf(w, "TLS coverage by %s, %s\n\n", by, DescribeWindow(win))
	t := output.NewTable(strings.ToUpper(by), "SENT", "ENCRYPTED", "PLAINTEXT", "COVERAGE").AlignRight(1, 2, 3, 4)
	for _, r := range rows {
		cov := "-"
		if r.Encrypted+r.Plaintext > 0 {
			cov = output.Pct(r.Coverage)
		}
		t.Add(output.Truncate(r.Key, 40), Num(r.Deliveries), Num(r.Encrypted), Num(r.Plaintext), cov)
	}
	return t.WriteText(w)
}

// WriteDowngrades renders `report downgrades` as "json", "csv" or a text
// table.
func WriteDowngrades(w io.Writer, format string, win store.Window, ds []store.Downgrade) error {
	if format == "json" {
		return output.JSON(w, NewDowngrades(ds))
	}
	if len(ds) == 0 && format == "table" {
		fmt.Fprintf(w, "No downgrades in this window (%s).\n", DescribeWindow(win))
		return nil
	}
	t := output.NewTable("DOMAIN", "FIRST SEEN", "LAST SEEN", "COUNT", "LAST TLS").AlignRight(3)
	for _, d := range ds {
		last := fmt.Sprintf("%s %s %s", output.Time(d.LastTLSAt), d.LastTLSProtocol, d.LastTLSTrust)
		t.Add(output.Truncate(d.Domain, 28), output.Time(d.FirstSeen), output.Time(d.LastSeen), Num(d.Count), last)
	}
	return t.Write(w, format)
}

// WriteOverrides renders `report overrides` as "json" (with the
// warnings), "csv" or a text table (the warnings are the caller's, for
// stderr).
func WriteOverrides(w io.Writer, format string, rows []OverrideRow, warns []store.ForcedPlaintext) error {
	if format == "json" {
		return output.JSON(w, Overrides{Rows: rows, Warnings: NewWarnings(warns)})
	}
	if len(rows) == 0 && format == "table" {
		fmt.Fprintln(w, "No overrides set (see `mailtls policy set --help`).")
		return nil
	}
	t := output.NewTable("KEY", "POLICY", "IN FORCE SINCE", "SENT", "ENCRYPTED", "PLAINTEXT", "DEFERRED", "TLS-DEFERRED", "BOUNCED").AlignRight(3, 4, 5, 6, 7, 8)
	for _, r := range rows {
		since := "expired"
		if t, err := time.Parse(time.RFC3339, r.InForceSince); err == nil {
			since = output.Time(t)
			if format == "csv" {
				since = r.InForceSince
			}
		} else if format == "csv" {
			since = ""
		}
		t.Add(output.Truncate(r.Key, 28), output.Truncate(r.Policy, 24), since, Num(r.Sent), Num(r.Encrypted), Num(r.Plaintext), Num(r.Deferred), Num(r.TLSDeferred), Num(r.Bounced))
	}
	return t.Write(w, format)
}

// WriteWarnings writes each warning as a "mailtls: warning:" line.
func WriteWarnings(w io.Writer, ws []store.ForcedPlaintext) {
	for _, x := range ws {
		fmt.Fprintln(w, "mailtls: warning: "+output.Escape(WarningMessage(x)))
	}
}

// WritePolicies renders `report policies` as "json", "csv" or a text
// table followed by every problem's message.
func WritePolicies(w io.Writer, format string, ps Policies) error {
	if format == "json" {
		return output.JSON(w, ps)
	}
	if len(ps.Rows) == 0 && format == "table" {
		fmt.Fprintln(w, "No cached DANE or MTA-STS policy (the daemon caches them with --sources dane,mta-sts).")
		return nil
	}
	t := output.NewTable("DOMAIN", "SOURCE", "MODE", "DELIVERIES", "WOULD FAIL", "WORST MX", "REASON").AlignRight(3, 4)
	for _, r := range ps.Rows {
		mx, why := "", ""
		if len(r.Problems) > 0 {
			mx, why = r.Problems[0].MX, r.Problems[0].Reason
		}
		t.Add(output.Truncate(r.Domain, 28), r.Source, r.Mode, Num(r.Deliveries), Num(r.WouldFail), output.Truncate(mx, 28), why)
	}
	if err := t.Write(w, format); err != nil || format != "table" {
		return err
	}
	sep := "\n"
	for _, r := range ps.Rows {
		for _, p := range r.Problems {
			fmt.Fprint(w, sep)
			sep = ""
			fmt.Fprintln(w, output.Escape(p.Message))
		}
	}
	return nil
}

// WriteDryRun says what an override of key at level would have done to
// the deliveries of the last days days (`policy set --dry-run`).
func WriteDryRun(w io.Writer, key, level string, days int, r store.DryRunResult) {
	fmt.Fprintf(w, "In the last %d days, %s deliveries to %s", days, Num(r.Deliveries), key)
	// What the level defers is what store.DryRun counted.
	switch {
	case policyd.Authenticates(level):
		fmt.Fprintf(w, "; %s plaintext and %s used an unverified certificate: %s would have been deferred.\n",
			wasWere(r.Plaintext), Num(r.Unverified), Num(r.WouldDefer))
	case policyd.RequiresTLS(level):
		fmt.Fprintf(w, "; %s plaintext and would have been deferred.\n", wasWere(r.Plaintext))
	default:
		fmt.Fprintf(w, "; %s would not defer any of them.\n", level)
	}
	fmt.Fprintln(w, "Nothing changed (--dry-run).")
}

func wasWere(n int64) string {
	if n == 1 {
		return "1 was"
	}
	return Num(n) + " were"
}
