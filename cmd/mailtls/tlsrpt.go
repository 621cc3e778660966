package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/discover"
	"github.com/mailtls/mailtls/output"
	"github.com/mailtls/mailtls/published"
	"github.com/mailtls/mailtls/store"
	"github.com/mailtls/mailtls/tlsrpt"
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
					&cli.StringFlag{Name: "domain", Usage: "only this policy `DOMAIN`"},
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

// tlsrptDay parses --date; the default is yesterday (UTC).
func tlsrptDay(c *cli.Context, now time.Time) (time.Time, error) {
	v := c.String("date")
	if v == "" {
		s, _ := tlsrpt.Day(now)
		return s.AddDate(0, 0, -1), nil
	}
	d, err := time.Parse("2006-01-02", v)
	if err != nil {
		return time.Time{}, usageErrorf("--date %q: want a UTC day as YYYY-MM-DD, e.g. 2026-11-30", v)
	}
	return d, nil
}

func loadTLSRPTSettings(c *cli.Context) error {
	for _, n := range tlsrptSettings {
		if c.Command.HasName("show") && (n == "resolver" || n == "sendmail" || n == "tlsrpt-timeout") || n == "tlsrpt" {
			continue
		}
		if err := loadConfigSetting(c, n); err != nil {
			return err
		}
	}
	return nil
}

// buildTLSRPT makes the reports of day for every policy domain (or only
// domain) with TLS sessions that day (tlsrpt.Daily), from the day's
// deliveries, the published-policy cache and the answer log.
func buildTLSRPT(ctx context.Context, st *store.Store, day time.Time, domain string, id tlsrpt.Identity) ([]tlsrpt.Report, error) {
	daily := tlsrpt.NewDaily(id, day)
	start, end := daily.Span()
	if err := st.Deliveries(ctx, store.Filter{Since: start, Until: end, Domain: domain}, daily.AddDelivery); err != nil {
		return nil, err
	}
	cached := map[string][]byte{}
	if err := st.LoadPublished(ctx, func(d string, data []byte) error {
		if !daily.Wants(d) {
			return nil
		}
		p, ff, err := published.TLSRPTPolicy(d, data)
		if err != nil {
			return fmt.Errorf("tlsrpt: %w", err)
		}
		daily.SetCached(d, p, ff)
		cached[d] = slices.Clone(data)
		return nil
	}); err != nil {
		return nil, err
	}
	for _, d := range daily.Domains() {
		if err := st.AnswerLog(ctx, d, func(a store.AnswerChange) error {
			if a.At.Before(end) {
				daily.AddChange(d, a.At, published.AnswerPolicy(d, a.Source, a.Policy, a.PolicyID, cached[d]))
			} else {
				daily.AddChange(d, a.At, tlsrpt.Policy{}) // logged, but not in force that day
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return daily.Reports(), nil
}

func tlsrptShow(c *cli.Context, e env) error {
	format := c.String("format")
	if err := checkFormat(format, "table", "json"); err != nil {
		return err
	}
	if err := loadTLSRPTSettings(c); err != nil {
		return err
	}
	day, err := tlsrptDay(c, time.Now())
	if err != nil {
		return err
	}
	domain := c.String("domain")
	if domain != "" {
		if domain, err = discover.NormalizeDomain(domain); err != nil {
			return usageErrorf("--domain: %v", err)
		}
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	reports, err := buildTLSRPT(c.Context, st, day, domain, identityOf(c))
	if err != nil {
		return err
	}
	if format == "json" {
		for _, r := range reports {
			if err := output.JSON(e.stdout, r); err != nil {
				return err
			}
		}
		return nil
	}
	if len(reports) == 0 {
		fmt.Fprintf(e.stdout, "no TLS sessions recorded on %s\n", day.Format("2006-01-02"))
		return nil
	}
	fmt.Fprintf(e.stdout, "TLS reports for %s (UTC)\n", day.Format("2006-01-02"))
	return tlsrptTable(reports).WriteText(e.stdout)
}

// tlsrptTable is tlsrpt show's table: the sessions of each policy of each
// report, the failures by result type, MX and IP.
func tlsrptTable(reports []tlsrpt.Report) *output.Table {
	t := output.NewTable("DOMAIN", "POLICY", "RESULT", "MX", "IP", "SESSIONS").AlignRight(5)
	for _, r := range reports {
		for _, p := range r.Policies {
			t.Add(p.Policy.Domain, string(p.Policy.Type), "successful", "", "", output.Itoa(p.Summary.Successful))
			t.Add(p.Policy.Domain, string(p.Policy.Type), "failed", "", "", output.Itoa(p.Summary.Failed))
			for _, f := range p.FailureDetails {
				t.Add(p.Policy.Domain, string(p.Policy.Type), "  "+string(f.ResultType), f.ReceivingMXHostname, f.ReceivingIP, output.Itoa(f.FailedSessionCount))
			}
		}
	}
	return t
}

func tlsrptSend(c *cli.Context, e env) error {
	if err := loadTLSRPTSettings(c); err != nil {
		return err
	}
	now := time.Now()
	day, err := tlsrptDay(c, now)
	if err != nil {
		return err
	}
	job, err := newTLSRPTJob(c, slog.New(slog.NewTextHandler(e.stderr, nil)), c.Bool("dry-run"))
	if err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	job.st = st
	t, failed, err := job.send(c.Context, day, now)
	if err != nil {
		return err
	}
	if t.Len() == 0 {
		fmt.Fprintf(e.stdout, "no reports to send for %s: no destination with TLS sessions that day publishes _smtp._tls\n", day.Format("2006-01-02"))
		return nil
	}
	if err := t.WriteText(e.stdout); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d report(s) not sent; failed sends are retried by later runs until %d days after their day", failed, int(tlsrpt.RetryFor.Hours()/24))
	}
	return nil
}

func identityOf(c *cli.Context) tlsrpt.Identity {
	return tlsrpt.Identity{Organization: c.String("tlsrpt-org"), Contact: c.String("tlsrpt-contact"), SendingMTAIP: c.String("tlsrpt-sending-ip")}
}

// tlsrptJob sends reports: tlsrpt send, and run --tlsrpt once a day.
type tlsrptJob struct {
	id  tlsrpt.Identity
	st  *store.Store
	res *discover.Resolver
	dl  *tlsrpt.Deliverer
	log *slog.Logger
}

// newTLSRPTJob checks the settings (tlsrpt-org, tlsrpt-contact, resolver,
// sendmail, timeout) and builds the job; st is set by the caller.
func newTLSRPTJob(c *cli.Context, log *slog.Logger, dryRun bool) (*tlsrptJob, error) {
	id := identityOf(c)
	if id.Organization == "" || id.Contact == "" {
		return nil, usageErrorf("TLS reports need tlsrpt-org and tlsrpt-contact (set both in the config file or as flags): RFC 8460 reports name who sends them")
	}
	from, err := tlsrpt.ContactAddress(id.Contact)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	timeout := c.Duration("tlsrpt-timeout")
	if timeout <= 0 {
		return nil, usageErrorf("--tlsrpt-timeout %s: want more than 0", timeout)
	}
	res, err := discover.NewResolver(c.String("resolver"), "")
	if err != nil {
		return nil, usageErrorf("--resolver: %v", err)
	}
	client := &http.Client{Timeout: timeout}
	if tlsrptRoots != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig.RootCAs = tlsrptRoots
		client.Transport = tr
	}
	dl := &tlsrpt.Deliverer{Mail: tlsrpt.Sendmail{Path: c.String("sendmail"), Timeout: timeout},
		Post: tlsrpt.HTTPS{Client: client}, From: from, Now: time.Now, Log: log, DryRun: dryRun}
	return &tlsrptJob{id: id, res: res, dl: dl, log: log}, nil
}

// send sends the reports of day, and retries the failed sends of the days
// before (tlsrpt.Sender). It returns a table of what happened and how
// many sends failed.
func (j *tlsrptJob) send(ctx context.Context, day, now time.Time) (*output.Table, int, error) {
	j.dl.Claims = j.st
	since, until := tlsrpt.RetrySpan(now)
	prior, err := j.st.TLSRPTSends(ctx, since, until)
	if err != nil {
		return nil, 0, err
	}
	var failedDays []string
	for _, s := range prior {
		if s.State == store.TLSRPTFailed {
			failedDays = append(failedDays, s.Day)
		}
	}
	sender := tlsrpt.Sender{Deliverer: j.dl, Log: j.log,
		Build: func(ctx context.Context, d time.Time) ([]tlsrpt.Report, error) {
			return buildTLSRPT(ctx, j.st, d, "", j.id)
		},
		Lookup: func(ctx context.Context, domain string) *tlsrpt.Record {
			if info := discover.LookupTLSRPT(ctx, j.res, domain); info != nil {
				return &tlsrpt.Record{RUA: info.RUA, Text: info.Record, Error: info.Error}
			}
			return nil
		}}
	outs, failed, err := sender.Send(ctx, day, now, failedDays)
	if err != nil {
		return nil, 0, err
	}
	t := output.NewTable("DAY", "DOMAIN", "RUA", "RESULT", "ERROR")
	for _, o := range outs {
		t.Add(o.Day, o.Domain, o.RUA, o.Result, o.Error)
	}
	return t, failed, nil
}

// tlsrptMaxDelay bounds the random delay after 00:00 UTC of run --tlsrpt.
const tlsrptMaxDelay = tlsrpt.MaxDelay

// loop sends yesterday's reports once a day until ctx ends.
func (j *tlsrptJob) loop(ctx context.Context, randDelay func() time.Duration) {
	first := true
	for {
		now := time.Now()
		at := tlsrpt.NextRun(now, randDelay(), first)
		first = false
		j.log.Info("tlsrpt: next reports", "at", at.UTC().Format(time.RFC3339))
		timer := time.NewTimer(at.Sub(now))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		now = time.Now()
		today, _ := tlsrpt.Day(now)
		_, failed, err := j.send(ctx, today.AddDate(0, 0, -1), now)
		if err != nil {
			j.log.Error("tlsrpt: sending the reports failed", "error", err)
		} else if failed > 0 {
			j.log.Warn("tlsrpt: some reports were not sent; later runs retry them", "failed", failed)
		}
	}
}
