package daily

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/mailtls/mailtls/discover"
	"github.com/mailtls/mailtls/output"
	"github.com/mailtls/mailtls/store"
	"github.com/mailtls/mailtls/tlsrpt"
)

// Store is what a Job reads and records its sends in.
type Store interface {
	Reader
	tlsrpt.Claims
	TLSRPTSends(ctx context.Context, since, until string) ([]store.TLSRPTSend, error)
}

var _ Store = (*store.Store)(nil)

// Config is how a Job sends: the settings of `tlsrpt send` and run
// --tlsrpt.
type Config struct {
	Identity tlsrpt.Identity
	Sendmail string        // Postfix's sendmail(1), for mailto: reports
	Timeout  time.Duration // of each send (sendmail run or HTTPS POST)
	Resolver string        // DNS resolver host:port; "" for /etc/resolv.conf's
	DryRun   bool          // say what would be sent; send and record nothing
	// Roots are the CAs an https: rua's certificate is checked against;
	// nil means the system's.
	Roots *x509.CertPool
}

// Job sends reports: tlsrpt send, and run --tlsrpt once a day.
type Job struct {
	St  Store // set by the caller before Send or Loop
	id  tlsrpt.Identity
	res *discover.Resolver
	dl  *tlsrpt.Deliverer
	log *slog.Logger
}

// New checks cfg and builds the job. Its errors are all bad input.
func New(cfg Config, log *slog.Logger) (*Job, error) {
	id := cfg.Identity
	if id.Organization == "" || id.Contact == "" {
		return nil, fmt.Errorf("TLS reports need tlsrpt-org and tlsrpt-contact (set both in the config file or as flags): RFC 8460 reports name who sends them")
	}
	from, err := tlsrpt.ContactAddress(id.Contact)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		return nil, fmt.Errorf("--tlsrpt-timeout %s: want more than 0", cfg.Timeout)
	}
	res, err := discover.NewResolver(cfg.Resolver, "")
	if err != nil {
		return nil, fmt.Errorf("--resolver: %v", err)
	}
	client := &http.Client{Timeout: cfg.Timeout}
	if cfg.Roots != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig.RootCAs = cfg.Roots
		client.Transport = tr
	}
	dl := &tlsrpt.Deliverer{Mail: tlsrpt.Sendmail{Path: cfg.Sendmail, Timeout: cfg.Timeout},
		Post: tlsrpt.HTTPS{Client: client}, From: from, Now: time.Now, Log: log, DryRun: cfg.DryRun}
	return &Job{id: id, res: res, dl: dl, log: log}, nil
}

// Send sends the reports of day, and retries the failed sends of the days
// before (tlsrpt.Sender). It returns what happened to each (report, rua)
// and how many sends failed.
func (j *Job) Send(ctx context.Context, day, now time.Time) ([]tlsrpt.Outcome, int, error) {
	j.dl.Claims = j.St
	since, until := tlsrpt.RetrySpan(now)
	prior, err := j.St.TLSRPTSends(ctx, since, until)
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
			return Build(ctx, j.St, d, "", j.id)
		},
		Lookup: func(ctx context.Context, domain string) *tlsrpt.Record {
			if info := discover.LookupTLSRPT(ctx, j.res, domain); info != nil {
				return &tlsrpt.Record{RUA: info.RUA, Text: info.Record, Error: info.Error}
			}
			return nil
		}}
	return sender.Send(ctx, day, now, failedDays)
}

// SendDay is `tlsrpt send`: Send, and a table of what happened written
// to w. Its error says how many sends failed.
func (j *Job) SendDay(ctx context.Context, w io.Writer, day, now time.Time) error {
	outs, failed, err := j.Send(ctx, day, now)
	if err != nil {
		return err
	}
	if len(outs) == 0 {
		fmt.Fprintf(w, "no reports to send for %s: no destination with TLS sessions that day publishes _smtp._tls\n", day.Format("2006-01-02"))
		return nil
	}
	t := output.NewTable("DAY", "DOMAIN", "RUA", "RESULT", "ERROR")
	for _, o := range outs {
		t.Add(o.Day, o.Domain, o.RUA, o.Result, o.Error)
	}
	if err := t.WriteText(w); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d report(s) not sent; failed sends are retried by later runs until %d days after their day", failed, int(tlsrpt.RetryFor.Hours()/24))
	}
	return nil
}

// Loop sends yesterday's reports once a day until ctx ends, at
// tlsrpt.NextRun with the delay randDelay returns (at most
// tlsrpt.MaxDelay), logging what failed.
func (j *Job) Loop(ctx context.Context, randDelay func() time.Duration) {
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
		_, failed, err := j.Send(ctx, today.AddDate(0, 0, -1), now)
		if err != nil {
			j.log.Error("tlsrpt: sending the reports failed", "error", err)
		} else if failed > 0 {
			j.log.Warn("tlsrpt: some reports were not sent; later runs retry them", "failed", failed)
		}
	}
}
