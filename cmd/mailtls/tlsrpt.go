package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/discover"
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
// domain) with TLS sessions that day, in domain order. The policies of
// each are the answers in force that day in the answer log
// (published.AnswerPolicy, tlsrpt.InForce); a domain without any logged
// answer (--sources override, or a database older than the answer log)
// has its entry in the published-policy cache now (no-policy-found
// without one).
func buildTLSRPT(ctx context.Context, st *store.Store, day time.Time, domain string, id tlsrptIdentity) ([]tlsrpt.Report, error) {
	start, end := tlsrpt.Day(day)
	byDomain := map[string][]delivery.Delivery{}
	f := store.Filter{Since: start, Until: end, Domain: domain}
	if err := st.Deliveries(ctx, f, func(d delivery.Delivery) error {
		if !d.Internal {
			byDomain[d.Domain] = append(byDomain[d.Domain], d)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	type pol struct {
		p tlsrpt.Policy
		f *tlsrpt.PolicyFetchFailure
	}
	pols := map[string]pol{}
	cached := map[string][]byte{}
	if err := st.LoadPublished(ctx, func(d string, data []byte) error {
		if _, ok := byDomain[d]; !ok {
			return nil
		}
		p, ff, err := published.TLSRPTPolicy(d, data)
		if err != nil {
			return fmt.Errorf("tlsrpt: %w", err)
		}
		pols[d] = pol{p, ff}
		cached[d] = slices.Clone(data)
		return nil
	}); err != nil {
		return nil, err
	}
	var out []tlsrpt.Report
	for _, d := range slices.Sorted(func(yield func(string) bool) {
		for k := range byDomain {
			if !yield(k) {
				return
			}
		}
	}) {
		p, ok := pols[d]
		if !ok {
			p.p = tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound}
		}
		logged := false
		var changes []tlsrpt.PolicyPeriod
		if err := st.AnswerLog(ctx, d, func(a store.AnswerChange) error {
			logged = true
			if a.At.Before(end) {
				changes = append(changes, tlsrpt.PolicyPeriod{From: a.At, Policy: published.AnswerPolicy(d, a.Source, a.Policy, a.PolicyID, cached[d])})
			}
			return nil
		}); err != nil {
			return nil, err
		}
		var periods []tlsrpt.PolicyPeriod
		if logged {
			periods = tlsrpt.InForce(start, changes)
		}
		r := tlsrpt.Build(tlsrpt.Input{Organization: id.org, Contact: id.contact, SendingMTAIP: id.sendingIP, Domain: d, Day: start,
			Periods: periods, Policy: p.p, FetchFailure: p.f, Deliveries: byDomain[d]})
		if s := r.Totals(); s.Successful+s.Failed > 0 {
			out = append(out, r)
		}
	}
	return out, nil
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
			if err := writeJSON(e.stdout, r); err != nil {
				return err
			}
		}
		return nil
	}
	if len(reports) == 0 {
		fmt.Fprintf(e.stdout, "no TLS sessions recorded on %s\n", day.Format("2006-01-02"))
		return nil
	}
	t := newTable("DOMAIN", "POLICY", "RESULT", "MX", "IP", "SESSIONS").alignRight(5)
	for _, r := range reports {
		for _, p := range r.Policies {
			t.add(p.Policy.Domain, string(p.Policy.Type), "successful", "", "", itoa(p.Summary.Successful))
			t.add(p.Policy.Domain, string(p.Policy.Type), "failed", "", "", itoa(p.Summary.Failed))
			for _, f := range p.FailureDetails {
				t.add(p.Policy.Domain, string(p.Policy.Type), "  "+string(f.ResultType), f.ReceivingMXHostname, f.ReceivingIP, itoa(f.FailedSessionCount))
			}
		}
	}
	fmt.Fprintf(e.stdout, "TLS reports for %s (UTC)\n", day.Format("2006-01-02"))
	return t.write(e.stdout, "table")
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
	if len(t.rows) == 0 {
		fmt.Fprintf(e.stdout, "no reports to send for %s: no destination with TLS sessions that day publishes _smtp._tls\n", day.Format("2006-01-02"))
		return nil
	}
	if err := t.write(e.stdout, "table"); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d report(s) not sent; failed sends are retried by later runs until %d days after their day", failed, int(tlsrpt.RetryFor.Hours()/24))
	}
	return nil
}

// tlsrptIdentity is who the reports say they are from.
type tlsrptIdentity struct{ org, contact, sendingIP string }

func identityOf(c *cli.Context) tlsrptIdentity {
	return tlsrptIdentity{c.String("tlsrpt-org"), c.String("tlsrpt-contact"), c.String("tlsrpt-sending-ip")}
}

// tlsrptJob sends reports: tlsrpt send, and run --tlsrpt once a day.
type tlsrptJob struct {
	id  tlsrptIdentity
	st  *store.Store
	res *discover.Resolver
	dl  *tlsrpt.Deliverer
	log *slog.Logger
}

// newTLSRPTJob checks the settings (tlsrpt-org, tlsrpt-contact, resolver,
// sendmail, timeout) and builds the job; st is set by the caller.
func newTLSRPTJob(c *cli.Context, log *slog.Logger, dryRun bool) (*tlsrptJob, error) {
	id := identityOf(c)
	if id.org == "" || id.contact == "" {
		return nil, usageErrorf("TLS reports need tlsrpt-org and tlsrpt-contact (set both in the config file or as flags): RFC 8460 reports name who sends them")
	}
	from, err := tlsrpt.ContactAddress(id.contact)
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
// before whose day ended less than tlsrpt.RetryFor before now. It returns
// a table of what happened and how many sends failed.
func (j *tlsrptJob) send(ctx context.Context, day, now time.Time) (*table, int, error) {
	j.dl.Claims = j.st
	days := []time.Time{day}
	oldest := now.Add(-tlsrpt.RetryFor).AddDate(0, 0, -1)
	prior, err := j.st.TLSRPTSends(ctx, oldest.Format("2006-01-02"), now.Format("2006-01-02"))
	if err != nil {
		return nil, 0, err
	}
	for _, s := range prior {
		d, err := time.Parse("2006-01-02", s.Day)
		if err == nil && s.State == store.TLSRPTFailed && !slices.ContainsFunc(days, d.Equal) {
			days = append(days, d)
		}
	}
	t := newTable("DAY", "DOMAIN", "RUA", "RESULT", "ERROR")
	failed := 0
	for _, d := range days {
		_, end := tlsrpt.Day(d)
		retry := now.Before(end.Add(tlsrpt.RetryFor))
		reports, err := buildTLSRPT(ctx, j.st, d, "", j.id)
		if err != nil {
			return nil, 0, err
		}
		for _, r := range reports {
			domain := r.Policies[0].Policy.Domain
			info := discover.LookupTLSRPT(ctx, j.res, domain)
			switch {
			case info == nil:
				continue // did not ask for reports (RFC 8460 §3)
			case info.Error != "":
				j.log.Warn("tlsrpt: skipping a domain: its _smtp._tls record could not be looked up or is malformed", "domain", domain, "record", info.Record, "error", info.Error)
				t.add(d.Format("2006-01-02"), domain, "", "skipped", strings.TrimPrefix(info.Error, "discover: "))
				continue
			}
			for _, o := range j.dl.Deliver(ctx, r, info.RUA, retry) {
				t.add(o.Day, o.Domain, o.RUA, o.Result, o.Error)
				if o.Result == "failed" {
					failed++
				}
			}
		}
	}
	return t, failed, nil
}

// tlsrptMaxDelay bounds the random delay after 00:00 UTC of run --tlsrpt
// (RFC 8460 §5.1: spread the sending over the day's first hours).
const tlsrptMaxDelay = 4 * time.Hour

// nextTLSRPTRun is when run --tlsrpt next sends: delay after the next
// 00:00 UTC after now; or, at start-up (first), delay after today's 00:00
// when that is still ahead, else within delay from now (a restart later
// in the day still sends yesterday's reports, and never twice: the store
// records each send).
func nextTLSRPTRun(now time.Time, delay time.Duration, first bool) time.Time {
	today, tomorrow := tlsrpt.Day(now)
	if first {
		if at := today.Add(delay); at.After(now) {
			return at
		}
		return now.Add(delay % time.Hour)
	}
	return tomorrow.Add(delay)
}

// loop sends yesterday's reports once a day until ctx ends.
func (j *tlsrptJob) loop(ctx context.Context, randDelay func() time.Duration) {
	first := true
	for {
		now := time.Now()
		at := nextTLSRPTRun(now, randDelay(), first)
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
