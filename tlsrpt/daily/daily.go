// Package daily is the TLS reporting (RFC 8460) of a mailtls host, fed
// from what it stores: the reports of a day built from the day's
// deliveries, the published-policy cache and the answer log (Build), the
// `tlsrpt show` view of them (Show), and the job that sends them to the
// rua of each _smtp._tls record, retries failed days and runs once a day
// for run --tlsrpt (Job). Package tlsrpt holds the protocol and reads
// nothing; this package does the reads (store, DNS) and hands it the
// results. The commands read the flags into Config and call it.
package daily

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/discover"
	"github.com/mailtls/mailtls/output"
	"github.com/mailtls/mailtls/published"
	"github.com/mailtls/mailtls/store"
	"github.com/mailtls/mailtls/tlsrpt"
)

// Reader is what the reports of a day are built from.
type Reader interface {
	Deliveries(ctx context.Context, f store.Filter, fn func(delivery.Delivery) error) error
	LoadPublished(ctx context.Context, fn func(domain string, data []byte) error) error
	AnswerLog(ctx context.Context, domain string, fn func(store.AnswerChange) error) error
}

var _ Reader = (*store.Store)(nil)

// Build makes the reports of day for every policy domain (or only
// domain) with TLS sessions that day (tlsrpt.Daily), from the day's
// deliveries, the published-policy cache and the answer log.
func Build(ctx context.Context, st Reader, day time.Time, domain string, id tlsrpt.Identity) ([]tlsrpt.Report, error) {
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

// ParseDay parses --date, a UTC day as YYYY-MM-DD; "" is the day before
// now's.
func ParseDay(v string, now time.Time) (time.Time, error) {
	if v == "" {
		s, _ := tlsrpt.Day(now)
		return s.AddDate(0, 0, -1), nil
	}
	d, err := time.Parse("2006-01-02", v)
	if err != nil {
		return time.Time{}, fmt.Errorf("--date %q: want a UTC day as YYYY-MM-DD, e.g. 2026-11-30", v)
	}
	return d, nil
}

// Show is `tlsrpt show`: the reports of Day, of Domain only unless it
// is "".
type Show struct {
	Day    time.Time
	Domain string
}

// CheckShow checks show's --date (ParseDay) and --domain; its errors
// are bad input.
func CheckShow(date, domain string, now time.Time) (Show, error) {
	day, err := ParseDay(date, now)
	if err != nil || domain == "" {
		return Show{Day: day}, err
	}
	if domain, err = discover.NormalizeDomain(domain); err != nil {
		return Show{}, fmt.Errorf("--domain: %v", err)
	}
	return Show{Day: day, Domain: domain}, nil
}

// Write builds the reports and writes them: as "json", one RFC 8460
// report object per domain; else as a table under a heading.
func (s Show) Write(ctx context.Context, st Reader, w io.Writer, format string, id tlsrpt.Identity) error {
	reports, err := Build(ctx, st, s.Day, s.Domain, id)
	if err != nil {
		return err
	}
	if format == "json" {
		for _, r := range reports {
			if err := output.JSON(w, r); err != nil {
				return err
			}
		}
		return nil
	}
	if len(reports) == 0 {
		fmt.Fprintf(w, "no TLS sessions recorded on %s\n", s.Day.Format("2006-01-02"))
		return nil
	}
	fmt.Fprintf(w, "TLS reports for %s (UTC)\n", s.Day.Format("2006-01-02"))
	return Table(reports).WriteText(w)
}

// Table is tlsrpt show's table: the sessions of each policy of each
// report, the failures by result type, MX and IP.
func Table(reports []tlsrpt.Report) *output.Table {
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
