package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/discover"
	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/report"
	"github.com/mailtls/mailtls/store"
)

// configureChecker lets tests point a check at local servers (certificate
// roots, SMTP dialer, MTA-STS port). It does nothing in production.
var configureChecker = func(*discover.Checker) {}

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
		Action: func(c *cli.Context) error { return check(c, e) },
	}
}

// checkArgs validates check's DOMAIN and flags into a checker.
func checkArgs(c *cli.Context) (domain, key string, chk *discover.Checker, err error) {
	if c.NArg() != 1 {
		return "", "", nil, usageErrorf("check takes exactly one DOMAIN (e.g. mailtls check example.com)")
	}
	if err := checkFormat(c.String("format"), "table", "json"); err != nil {
		return "", "", nil, err
	}
	domain, err = discover.NormalizeDomain(c.Args().First())
	if err != nil {
		return "", "", nil, usageErrorf("%v", err)
	}
	key, err = policyd.NormalizeKey(domain)
	if err != nil || strings.HasPrefix(key, ".") || strings.HasPrefix(key, "[") {
		return "", "", nil, usageErrorf("invalid DOMAIN %q (want a mail domain such as example.com)", c.Args().First())
	}
	port := c.Int("port")
	if port < 1 || port > 65535 {
		return "", "", nil, usageErrorf("invalid --port %d (want 1-65535)", port)
	}
	timeout, err := parseDuration(c.String("timeout"))
	if err != nil || timeout < time.Second || timeout > 10*time.Minute {
		return "", "", nil, usageErrorf("invalid --timeout %q (want a duration from 1s to 10m, e.g. 30s)", c.String("timeout"))
	}
	helo := c.String("helo")
	if helo != "" && (strings.ContainsAny(helo, " \t\r\n") || len(helo) > 255) {
		return "", "", nil, usageErrorf("invalid --helo %q (want a host name without spaces)", helo)
	}
	if c.Bool("force") && !c.Bool("apply") {
		return "", "", nil, usageErrorf("--force only goes with --apply (mailtls check DOMAIN --apply --force)")
	}
	res, err := discover.NewResolver(c.String("resolver"), "")
	if err != nil {
		return "", "", nil, usageErrorf("%v", err)
	}
	chk = &discover.Checker{Resolver: res, Timeout: timeout, Port: port, HELO: helo, AllowPrivate: c.Bool("allow-private")}
	configureChecker(chk)
	return domain, key, chk, nil
}

func check(c *cli.Context, e env) error {
	domain, key, chk, err := checkArgs(c)
	if err != nil {
		return err
	}
	rep, err := chk.Check(c.Context, domain)
	if err != nil {
		if errors.Is(err, discover.ErrBadInput) {
			return usageErrorf("%v", err)
		}
		return err
	}
	out := discover.Result{Report: rep}
	st, stErr := openStore(c)
	if stErr == nil {
		defer st.Close()
		out.History, stErr = report.DomainHistory(c.Context, st, domain, time.Now())
		if stErr == nil {
			out.CurrentOverride, stErr = report.CurrentOverride(c.Context, st, key)
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
		out.Applied, lowered, applyErr = report.ApplyRecommendation(c.Context, st, store.Actor(e.getenv), key, rep.Recommendation, out.CurrentOverride, c.Bool("force"), time.Now())
	}
	if c.String("format") == "json" {
		if err := writeJSON(e.stdout, out); err != nil {
			return err
		}
	} else if err := discover.WriteText(e.stdout, out, historySummary(out), checkTable); err != nil {
		return err
	}
	if applyErr != nil {
		return applyErr
	}
	if advice := out.Advice(key, c.Bool("apply"), lowered); advice != "" && c.String("format") == "table" {
		fmt.Fprintf(e.stdout, "\n%s\n", advice)
	}
	return nil
}

// checkTable renders check's MX table through the one output helper.
func checkTable(w io.Writer, header []string, rows [][]string) error {
	t := newTable(header...).alignRight(0)
	for _, r := range rows {
		t.add(r...)
	}
	return t.writeText(w)
}

// historySummary is the History line of the text report.
func historySummary(out discover.Result) string {
	if out.HistoryError != "" {
		return "unavailable: " + out.HistoryError
	}
	h := out.History
	if h == nil || h.Deliveries == 0 {
		return fmt.Sprintf("no deliveries to %s recorded in the last %d days", out.Domain, discover.HistoryDays)
	}
	s := fmt.Sprintf("last %d days: %s sent, %s encrypted, %s plaintext", discover.HistoryDays, num(h.Deliveries), num(h.Encrypted), num(h.Plaintext))
	if h.Unknown > 0 {
		s += ", " + num(h.Unknown) + " unknown"
	}
	if h.Encrypted+h.Plaintext > 0 {
		s += fmt.Sprintf(" (%s of known encrypted)", pct(h.Coverage))
	}
	if tr := report.TrustLine(h.ByTrust); tr != "-" {
		s += "; trust " + tr
	}
	if h.LastPlaintext != nil {
		s += "; last plaintext " + fmtTime(*h.LastPlaintext)
	}
	return s
}
