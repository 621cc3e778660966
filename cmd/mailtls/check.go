package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/discover"
	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/store"
)

// configureChecker lets tests point a check at local servers (certificate
// roots, SMTP dialer, MTA-STS port). It does nothing in production.
var configureChecker = func(*discover.Checker) {}

// historyDays is how far back `check` looks in our own delivery records.
const historyDays = 30

// checkHistory is what our own records say about a domain.
type checkHistory struct {
	Since      time.Time        `json:"since"`
	Deliveries int64            `json:"deliveries"`
	Encrypted  int64            `json:"encrypted"`
	Plaintext  int64            `json:"plaintext"`
	Unknown    int64            `json:"unknown"`
	Coverage   float64          `json:"coverage"`
	ByTrust    map[string]int64 `json:"by_trust"`
	// LastPlaintext is the newest delivery that went out without TLS.
	LastPlaintext *time.Time `json:"last_plaintext"`
}

// checkJSON is `check --format json`: the discover report plus our history
// and the override currently in force.
type checkJSON struct {
	*discover.Report
	CurrentOverride *string       `json:"current_override"`
	History         *checkHistory `json:"history"`
	HistoryError    string        `json:"history_error,omitempty"`
	Applied         bool          `json:"applied"`
}

func checkCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "find out which TLS a destination supports before forcing a policy on it",
		ArgsUsage: "DOMAIN",
		UsageText: "mailtls check example.com\n" +
			"mailtls check example.com --format json | jq .recommendation\n" +
			"mailtls check example.com --resolver 127.0.0.1:53 --timeout 60s\n" +
			"mailtls check example.com --apply     # set the recommended policy as an override\n" +
			"mailtls check example.com --apply --force   # also when that lowers the current override",
		Description: "check looks up the MX hosts of DOMAIN with their DANE TLSA records, the MTA-STS\n" +
			"and TLSRPT records and the MTA-STS policy, then connects to every MX on port 25:\n" +
			"greeting, EHLO, STARTTLS, TLS handshake, QUIT. It never sends MAIL FROM.\n" +
			"It recommends the strongest Postfix TLS level that would have worked right now\n" +
			"(dane-only, secure match=..., verify, encrypt, dane or may) and says why,\n" +
			"and shows what our own delivery records say about the domain.\n" +
			"DNSSEC status comes from the AD bit of the resolver: use a validating resolver\n" +
			"on localhost. Outbound port 25 must be open for the probe.\n" +
			"Only public addresses are probed: an MX (or MTA-STS host) that resolves to loopback,\n" +
			"private, link-local, CGNAT or documentation addresses is reported as not probed,\n" +
			"unless --allow-private.\n" +
			"--apply never lowers an override without --force: it replaces the current one only\n" +
			"with a strictly stronger level that keeps all its attributes (none < may < encrypt <\n" +
			"fingerprint, verify, secure, dane-only; may < dane < dane-only). Any other change,\n" +
			"also secure match=A to secure match=B, needs --force.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "resolver", Usage: "DNS resolver `ADDR` (host:port); default: the nameservers of /etc/resolv.conf, else 127.0.0.1:53"},
			&cli.IntFlag{Name: "port", Value: 25, Usage: "SMTP `PORT` to probe on every MX"},
			&cli.StringFlag{Name: "timeout", Value: "30s", Usage: "overall time limit `DUR`; every step (DNS query, connect, greeting, EHLO, TLS) gets a share"},
			&cli.StringFlag{Name: "helo", Usage: "`NAME` to send in EHLO (default: this host's name)"},
			formatFlag("table", "table|json"),
			&cli.BoolFlag{Name: "apply", Usage: "set the recommended policy as an override for DOMAIN after printing it"},
			&cli.BoolFlag{Name: "force", Usage: "with --apply: replace the override even when the recommendation is not stronger"},
			&cli.BoolFlag{Name: "allow-private", Usage: "also probe loopback, private, link-local and other non-public addresses"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErrorf("check takes exactly one DOMAIN (e.g. mailtls check example.com)")
			}
			format := c.String("format")
			if err := checkFormat(format, "table", "json"); err != nil {
				return err
			}
			domain, err := discover.NormalizeDomain(c.Args().First())
			if err != nil {
				return usageErrorf("%v", err)
			}
			key, err := policyd.NormalizeKey(domain)
			if err != nil || strings.HasPrefix(key, ".") || strings.HasPrefix(key, "[") {
				return usageErrorf("invalid DOMAIN %q (want a mail domain such as example.com)", c.Args().First())
			}
			port := c.Int("port")
			if port < 1 || port > 65535 {
				return usageErrorf("invalid --port %d (want 1-65535)", port)
			}
			timeout, err := parseDuration(c.String("timeout"))
			if err != nil || timeout < time.Second || timeout > 10*time.Minute {
				return usageErrorf("invalid --timeout %q (want a duration from 1s to 10m, e.g. 30s)", c.String("timeout"))
			}
			helo := c.String("helo")
			if helo != "" && (strings.ContainsAny(helo, " \t\r\n") || len(helo) > 255) {
				return usageErrorf("invalid --helo %q (want a host name without spaces)", helo)
			}
			if c.Bool("force") && !c.Bool("apply") {
				return usageErrorf("--force only goes with --apply (mailtls check DOMAIN --apply --force)")
			}
			res, err := discover.NewResolver(c.String("resolver"), "")
			if err != nil {
				return usageErrorf("%v", err)
			}

			chk := &discover.Checker{Resolver: res, Timeout: timeout, Port: port, HELO: helo, AllowPrivate: c.Bool("allow-private")}
			configureChecker(chk)
			rep, err := chk.Check(c.Context, domain)
			if err != nil {
				if errors.Is(err, discover.ErrBadInput) {
					return usageErrorf("%v", err)
				}
				return err
			}

			out := checkJSON{Report: rep}
			st, stErr := openStore(c)
			if stErr == nil {
				defer st.Close()
				out.History, stErr = domainHistory(c.Context, st, domain, time.Now())
				if stErr == nil {
					out.CurrentOverride, stErr = currentOverride(c.Context, st, key)
				}
			}
			if stErr != nil {
				if c.Bool("apply") {
					return stErr
				}
				out.HistoryError = stErr.Error()
			}

			var applyErr error
			lowered := false
			if c.Bool("apply") {
				out.Applied, lowered, applyErr = applyRecommendation(c.Context, st, store.Actor(e.getenv), key, rep.Recommendation, out.CurrentOverride, c.Bool("force"))
			}
			if format == "json" {
				if err := writeJSON(e.stdout, out); err != nil {
					return err
				}
			} else if err := writeCheckText(e.stdout, out); err != nil {
				return err
			}
			if applyErr != nil {
				return applyErr
			}
			if format == "table" {
				switch {
				case out.Applied && out.CurrentOverride == nil:
					fmt.Fprintf(e.stdout, "\nApplied: override %s -> %s\n", key, rep.Recommendation.Policy)
				case out.Applied:
					how := ""
					if lowered {
						how = " (lowered: --force)"
					}
					fmt.Fprintf(e.stdout, "\nApplied: override %s %s -> %s%s\n", key, *out.CurrentOverride, rep.Recommendation.Policy, how)
				case c.Bool("apply"):
					fmt.Fprintf(e.stdout, "\nNothing applied: %s\n", notApplied(rep.Recommendation, out.CurrentOverride))
				case rep.Recommendation.Level != "" && rep.Recommendation.Level != "may":
					if p, err := policyd.ParsePolicy(rep.Recommendation.Policy); err == nil && lowers(out.CurrentOverride, p) {
						fmt.Fprintf(e.stdout, "\nThe override %s stays: %s could weaken TLS (re-run with --apply --force to replace it anyway)\n", *out.CurrentOverride, p)
					} else if out.CurrentOverride == nil || *out.CurrentOverride != p.String() {
						fmt.Fprintf(e.stdout, "\nTo apply: mailtls policy set %s %s   (or re-run with --apply)\n", key, rep.Recommendation.Policy)
					}
				}
			}
			return nil
		},
	}
}

// domainHistory summarises our delivery records for domain over the last
// historyDays and finds the newest plaintext delivery.
func domainHistory(ctx context.Context, st *store.Store, domain string, now time.Time) (*checkHistory, error) {
	since := now.AddDate(0, 0, -historyDays)
	s, err := st.Summary(ctx, store.Window{Since: since, Until: now, Domain: domain})
	if err != nil {
		return nil, err
	}
	h := &checkHistory{Since: since.UTC(), Deliveries: s.Deliveries, Encrypted: s.Encrypted, Plaintext: s.Plaintext,
		Unknown: s.Unknown, Coverage: s.Coverage, ByTrust: s.ByTrust}
	if h.ByTrust == nil {
		h.ByTrust = map[string]int64{}
	}
	if s.Plaintext == 0 {
		return h, nil
	}
	err = st.Deliveries(ctx, store.Filter{Domain: domain, Since: since, Until: now}, func(d delivery.Delivery) error {
		if d.Status == delivery.Sent && d.TLS != nil && !*d.TLS {
			t := d.Time.UTC()
			h.LastPlaintext = &t
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// currentOverride returns the policy of the exact override for key, if any.
func currentOverride(ctx context.Context, st overrideWriter, key string) (*string, error) {
	ovs, err := st.Overrides(ctx)
	if err != nil {
		return nil, err
	}
	for _, o := range ovs {
		if o.Key == key {
			p := o.Policy
			return &p, nil
		}
	}
	return nil, nil
}

// applyRecommendation sets the recommended policy as the override for key.
// may is the default answer and no recommendation means nothing to force:
// both leave the overrides alone. A current override is replaced only by
// a policy that does not lower it (policyd.Lowers), unless force; lowered
// tells that force was needed.
func applyRecommendation(ctx context.Context, st overrideWriter, actor, key string, rec discover.Recommendation, cur *string, force bool) (applied, lowered bool, err error) {
	if rec.Level == "" || rec.Level == "may" || cur != nil && *cur == rec.Policy {
		return false, false, nil
	}
	p, err := policyd.ParsePolicy(rec.Policy)
	if err != nil {
		return false, false, fmt.Errorf("recommended policy %q is not valid, not applied: %w", rec.Policy, err)
	}
	lowered = lowers(cur, p)
	if lowered && !force {
		return false, true, fmt.Errorf("not applied: %s could weaken TLS for %s: the override is %s (to replace it: --force, or mailtls policy set %s %s)",
			p, key, *cur, key, p)
	}
	o := store.Override{Key: key, Policy: p.String(),
		Note: fmt.Sprintf("set by mailtls check on %s: %s", time.Now().UTC().Format("2006-01-02"), rec.Level)}
	if err := st.SetOverride(ctx, o, actor); err != nil {
		return false, lowered, err
	}
	return true, lowered, nil
}

// lowers reports whether p would lower the current override cur. A current
// value that does not parse (written by another tool) is not known to be
// weaker, so it counts as stronger.
func lowers(cur *string, p policyd.Policy) bool {
	if cur == nil {
		return false
	}
	old, err := policyd.ParsePolicy(*cur)
	return err != nil || policyd.Lowers(old, p)
}

func notApplied(rec discover.Recommendation, cur *string) string {
	switch {
	case rec.Level == "":
		return "there is no recommendation for this domain"
	case rec.Level == "may":
		return "may is the default answer, so no override is needed (remove one with `mailtls policy rm`)"
	case cur != nil && *cur == rec.Policy:
		return "the override is already " + rec.Policy
	}
	return ""
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// writeCheckText renders the report for a terminal.
func writeCheckText(w io.Writer, out checkJSON) error {
	r := out.Report
	fmt.Fprintf(w, "Domain    %s  (checked in %.1fs)\n", r.Domain, float64(r.DurationMS)/1000)
	switch {
	case r.NullMX:
		fmt.Fprintln(w, "MX        null MX (\"MX 0 .\"): the domain accepts no mail")
	case r.ImplicitMX:
		fmt.Fprintln(w, "MX        none; the domain's own address is the implicit MX")
	case len(r.MX) == 0:
		fmt.Fprintln(w, "MX        none found")
	default:
		fmt.Fprintf(w, "MX        %d host(s), DNSSEC-validated: %s\n", len(r.MX), yesNo(r.MXDNSSEC))
	}
	for _, msg := range r.Errors {
		fmt.Fprintf(w, "          %s\n", msg)
	}
	if r.ResolverNote != "" {
		fmt.Fprintf(w, "DNS       %s\n", r.ResolverNote)
	}
	if len(r.MX) > 0 {
		fmt.Fprintln(w)
		t := newTable("PREF", "MX", "ADDRESS", "STARTTLS", "TLS", "CERTIFICATE", "DANE", "MTA-STS").alignRight(0)
		var problems []string
		for _, m := range r.MX {
			p := m.Probe
			addr, starttls, tlsDesc, cert, dane, sts := "-", "-", "-", "-", "-", "-"
			if p.Address != "" {
				addr = p.Address
			}
			if p.Connected && p.FailedStep != discover.StepGreeting && p.FailedStep != discover.StepEHLO {
				starttls = yesNo(p.STARTTLS)
			}
			if p.TLS != nil {
				tlsDesc = p.TLS.Version
				cert = certSummary(p.TLS)
			}
			if len(m.TLSA) > 0 {
				dane = fmt.Sprintf("%d TLSA", len(m.TLSA))
				if !m.TLSADNSSEC {
					dane += ", unsigned"
				} else if m.DANEMatch {
					dane += ", match"
				} else if p.TLS != nil {
					dane += ", no match"
				}
			}
			if m.MTASTSMatch != nil {
				sts = "listed"
				if !*m.MTASTSMatch {
					sts = "NOT listed"
				}
			}
			t.add(fmt.Sprint(m.Preference), m.Host, addr, starttls, tlsDesc, cert, dane, sts)
			if m.AddressError != "" {
				problems = append(problems, fmt.Sprintf("%s: %s", m.Host, m.AddressError))
			}
			switch {
			case p.FailedStep == discover.StepAddress:
				problems = append(problems, fmt.Sprintf("%s: %s (--allow-private probes it)", m.Host, p.Error))
			case len(m.NotProbed) > 0:
				problems = append(problems, fmt.Sprintf("%s: not probed at %s: not public (--allow-private probes them)", m.Host, strings.Join(m.NotProbed, ", ")))
			}
			if p.Error != "" && p.FailedStep != discover.StepAddress {
				problems = append(problems, fmt.Sprintf("%s: %s: %s", m.Host, p.FailedStep, p.Error))
			}
			if p.TLS != nil && p.TLS.VerifyError != "" {
				problems = append(problems, fmt.Sprintf("%s: certificate: %s", m.Host, p.TLS.VerifyError))
			}
			if m.TLSAError != "" {
				problems = append(problems, fmt.Sprintf("%s: TLSA: %s", m.Host, m.TLSAError))
			}
		}
		if err := t.writeText(w); err != nil {
			return err
		}
		for _, p := range problems {
			fmt.Fprintf(w, "  ! %s\n", p)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "MTA-STS   %s\n", mtastsSummary(r.MTASTS))
	fmt.Fprintf(w, "TLSRPT    %s\n", tlsrptSummary(r.TLSRPT))
	fmt.Fprintf(w, "History   %s\n", historySummary(out))
	cur := "none (the default answer applies)"
	if out.CurrentOverride != nil {
		cur = *out.CurrentOverride
	}
	if out.HistoryError == "" {
		fmt.Fprintf(w, "Override  %s\n", cur)
	}
	fmt.Fprintln(w)
	rec := r.Recommendation
	if rec.Level == "" {
		fmt.Fprintln(w, "Recommendation: none")
	} else {
		fmt.Fprintf(w, "Recommendation: %s\n", rec.Policy)
	}
	for _, reason := range rec.Reasons {
		fmt.Fprintf(w, "  - %s\n", reason)
	}
	return nil
}

func certSummary(t *discover.TLSResult) string {
	var parts []string
	switch {
	case t.ChainVerified:
		parts = append(parts, "verified")
	case t.Expired:
		parts = append(parts, "expired")
	case t.SelfSigned:
		parts = append(parts, "self-signed")
	default:
		parts = append(parts, "untrusted")
	}
	if t.NameMatch {
		parts = append(parts, "name ok")
	} else {
		parts = append(parts, "name mismatch")
	}
	parts = append(parts, "until "+t.NotAfter.Format("2006-01-02"))
	return strings.Join(parts, ", ")
}

func mtastsSummary(m *discover.MTASTSInfo) string {
	switch {
	case m == nil:
		return "none"
	case m.RecordError != "":
		return "record unusable: " + m.RecordError
	case m.PolicyError != "":
		return "policy unusable: " + m.PolicyError
	case m.Policy == nil:
		return "none"
	}
	p := m.Policy
	s := fmt.Sprintf("mode %s, max_age %d, id %s", p.Mode, p.MaxAge, m.ID)
	if len(p.MX) > 0 {
		s += ", mx " + strings.Join(p.MX, " ")
	}
	return s
}

func tlsrptSummary(t *discover.TLSRPTInfo) string {
	switch {
	case t == nil:
		return "none"
	case t.Error != "":
		return "unusable: " + t.Error
	}
	return "reports to " + strings.Join(t.RUA, ", ")
}

func historySummary(out checkJSON) string {
	if out.HistoryError != "" {
		return "unavailable: " + out.HistoryError
	}
	h := out.History
	if h == nil || h.Deliveries == 0 {
		return fmt.Sprintf("no deliveries to %s recorded in the last %d days", out.Domain, historyDays)
	}
	s := fmt.Sprintf("last %d days: %s sent, %s encrypted, %s plaintext", historyDays, num(h.Deliveries), num(h.Encrypted), num(h.Plaintext))
	if h.Unknown > 0 {
		s += ", " + num(h.Unknown) + " unknown"
	}
	if h.Encrypted+h.Plaintext > 0 {
		s += fmt.Sprintf(" (%s of known encrypted)", pct(h.Coverage))
	}
	if tr := splitLine(h.ByTrust, []string{"verified", "trusted", "untrusted", "anonymous"}); tr != "-" {
		s += "; trust " + tr
	}
	if h.LastPlaintext != nil {
		s += "; last plaintext " + fmtTime(*h.LastPlaintext)
	}
	return s
}
