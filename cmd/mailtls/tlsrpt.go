package main

import (
	"crypto/x509"
	"log/slog"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/tlsrpt"
	"github.com/mailtls/mailtls/tlsrpt/daily"
)

// tlsrptRoots are the CAs an https: rua's certificate is checked against;
// nil means the system's (SSL_CERT_FILE and SSL_CERT_DIR work as Go
// documents). Tests set it.
var tlsrptRoots *x509.CertPool

// tlsrptSettings are the config file settings the tlsrpt commands read
// when not given as flags (the file is shared with the daemon).
var tlsrptSettings = []string{"tlsrpt-org", "tlsrpt-contact", "tlsrpt-sending-ip", "resolver", "sendmail", "tlsrpt-timeout", "tlsrpt"}

func tlsrptFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "config `FILE` to read the tlsrpt-* settings (and resolver, sendmail) from (default /etc/mailtls/mailtls.conf when present)"},
		&cli.StringFlag{Name: "date", Usage: "the UTC `DAY` to report, YYYY-MM-DD; default: yesterday"},
	}, tlsrptIdentityFlags()...)
}

// tlsrptIdentityFlags say who the reports are from.
func tlsrptIdentityFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "tlsrpt-org", Usage: "`NAME` of the reporting organization (RFC 8460 organization-name)"},
		&cli.StringFlag{Name: "tlsrpt-contact", Usage: "contact mail `ADDRESS` of the reports (contact-info; also their From)"},
		&cli.StringFlag{Name: "tlsrpt-sending-ip", Usage: "our outbound `IP` for the reports' sending-mta-ip (Postfix does not log it); default: left out"},
	}
}

// tlsrptSendFlags are how reports are sent.
func tlsrptSendFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "sendmail", Value: "/usr/sbin/sendmail", Usage: "Postfix's sendmail(1) `PATH`, for mailto: reports"},
		&cli.DurationFlag{Name: "tlsrpt-timeout", Value: 30 * time.Second, Usage: "`DURATION` each report send (sendmail run or HTTPS POST) may take"},
	}
}

// runTLSRPTFlags are run's flags for --tlsrpt (run has --resolver).
func runTLSRPTFlags() []cli.Flag {
	return append(append([]cli.Flag{
		&cli.BoolFlag{Name: "tlsrpt", Usage: "send yesterday's TLS reports (RFC 8460) once a day, at a random time in the first 4 hours after 00:00 UTC; needs tlsrpt-org and tlsrpt-contact"},
	}, tlsrptIdentityFlags()...), tlsrptSendFlags()...)
}

func tlsrptCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "tlsrpt",
		Usage: "SMTP TLS reports (RFC 8460) for the destinations that ask for them",
		UsageText: "mailtls tlsrpt show                         # yesterday's reports (UTC)\n" +
			"mailtls tlsrpt show --date 2026-11-30 --domain example.com --format json\n" +
			"mailtls tlsrpt send --dry-run               # who would get what\n" +
			"mailtls tlsrpt send                         # send each report once to every rua",
		Subcommands: []*cli.Command{
			{
				Name:      "show",
				Usage:     "print the reports that would be sent for a day: one per destination with recorded TLS sessions",
				UsageText: "mailtls tlsrpt show [--date YYYY-MM-DD] [--domain D] [--format table|json]",
				Flags: append(tlsrptFlags(),
					&cli.StringFlag{Name: "domain", Usage: "only this policy `DOMAIN` (an IDN in either form)"},
					formatFlag("table", "table|json (one RFC 8460 report object per domain)")),
				Action: func(c *cli.Context) error { return tlsrptShow(c, e) },
			},
			{
				Name:  "send",
				Usage: "send the day's reports to every rua of the destinations that publish _smtp._tls, each at most once; retry failed sends of the last 3 days",
				UsageText: "mailtls tlsrpt send [--date YYYY-MM-DD] [--dry-run]\n" +
					"needs tlsrpt-org and tlsrpt-contact (flags or config)",
				Flags: append(append(tlsrptFlags(),
					&cli.BoolFlag{Name: "dry-run", Usage: "look up the rua records and say what would be sent; send and record nothing"},
					&cli.StringFlag{Name: "resolver", Usage: "DNS resolver `ADDR` (host:port) for the _smtp._tls records; default: the first nameserver of /etc/resolv.conf"}),
					tlsrptSendFlags()...),
				Action: func(c *cli.Context) error { return tlsrptSend(c, e) },
			},
		},
	}
}

func loadTLSRPTSettings(c *cli.Context) error {
	for _, n := range tlsrptSettings {
		if c.Command.HasName("show") && (n == "resolver" || n == "sendmail" || n == "tlsrpt-timeout") || n == "tlsrpt" {
			continue
		}
		if err := conf.ApplySetting(c, n); err != nil {
			return err
		}
	}
	return nil
}

func tlsrptShow(c *cli.Context, e env) error {
	format := c.String("format")
	if err := checkFormat(format, "table", "json"); err != nil {
		return err
	}
	if err := loadTLSRPTSettings(c); err != nil {
		return err
	}
	show, err := daily.CheckShow(c.String("date"), c.String("domain"), time.Now())
	if err != nil {
		return usageErrorf("%v", err)
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	return show.Write(c.Context, st, e.stdout, format, identityOf(c))
}

func tlsrptSend(c *cli.Context, e env) error {
	if err := loadTLSRPTSettings(c); err != nil {
		return err
	}
	now := time.Now()
	day, err := daily.ParseDay(c.String("date"), now)
	if err != nil {
		return usageErrorf("%v", err)
	}
	j, err := newTLSRPTJob(c, slog.New(slog.NewTextHandler(e.stderr, nil)), c.Bool("dry-run"))
	if err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	j.St = st
	return j.SendDay(c.Context, e.stdout, day, now)
}

func identityOf(c *cli.Context) tlsrpt.Identity {
	return tlsrpt.Identity{Organization: c.String("tlsrpt-org"), Contact: c.String("tlsrpt-contact"), SendingMTAIP: c.String("tlsrpt-sending-ip")}
}

// newTLSRPTJob reads the job's settings (tlsrpt-org, tlsrpt-contact,
// resolver, sendmail, timeout) and builds it; St is set by the caller.
func newTLSRPTJob(c *cli.Context, log *slog.Logger, dryRun bool) (*daily.Job, error) {
	j, err := daily.New(daily.Config{Identity: identityOf(c), Sendmail: c.String("sendmail"), Timeout: c.Duration("tlsrpt-timeout"),
		Resolver: c.String("resolver"), DryRun: dryRun, Roots: tlsrptRoots}, log)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	return j, nil
}
