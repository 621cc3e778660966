package main

import (
	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/report"
	"github.com/mailtls/mailtls/store"
)

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

func check(c *cli.Context, e env) error {
	if c.NArg() != 1 {
		return usageErrorf("check takes exactly one DOMAIN (e.g. mailtls check example.com)")
	}
	if err := checkFormat(c.String("format"), "table", "json"); err != nil {
		return err
	}
	q := report.DomainCheck{Domain: c.Args().First(), Resolver: c.String("resolver"), Timeout: c.String("timeout"), HELO: c.String("helo"),
		Port: c.Int("port"), JSON: c.String("format") == "json", Apply: c.Bool("apply"), Force: c.Bool("force"),
		AllowPrivate: c.Bool("allow-private"), Actor: store.Actor(e.getenv)}
	return q.Run(c.Context, func() (report.DomainCheckStore, error) { return openStore(c) }, e.stdout)
}
