package tlsrpt

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// Record is what the command's DNS found of a policy domain's _smtp._tls
// record (RFC 8460 §3).
type Record struct {
	RUA   []string
	Text  string // the record as published, for the log
	Error string // why it cannot be used; "" when it can
}

// Sender sends the reports of a day and retries the failed sends of the
// days before, for `tlsrpt send` and run --tlsrpt. It reads neither the
// store nor DNS: the command hands it both.
type Sender struct {
	Deliverer *Deliverer
	// Build returns the reports of the UTC day holding day.
	Build func(ctx context.Context, day time.Time) ([]Report, error)
	// Lookup returns domain's _smtp._tls record, nil when it publishes
	// none (it does not ask for reports).
	Lookup func(ctx context.Context, domain string) *Record
	Log    *slog.Logger
}

// RetrySpan is the span of days, as YYYY-MM-DD, whose failed sends a send
// at now may retry.
func RetrySpan(now time.Time) (since, until string) {
	return now.Add(-RetryFor).AddDate(0, 0, -1).Format("2006-01-02"), now.Format("2006-01-02")
}

// Send sends the reports of day, then retries those of failedDays (the
// days of failed sends in RetrySpan) whose day ended less than RetryFor
// before now. It returns what happened to each (report, rua), a
// domain whose record is unusable as one "skipped" outcome, and how many
// sends failed.
func (s *Sender) Send(ctx context.Context, day, now time.Time, failedDays []string) ([]Outcome, int, error) {
	var out []Outcome
	failed := 0
	for _, d := range SendDays(day, failedDays) {
		_, end := Day(d)
		reports, err := s.Build(ctx, d)
		if err != nil {
			return nil, 0, err
		}
		for _, r := range reports {
			outs := s.sendOne(ctx, d, r, now.Before(end.Add(RetryFor)))
			for _, o := range outs {
				if o.Result == "failed" {
					failed++
				}
			}
			out = append(out, outs...)
		}
	}
	return out, failed, nil
}

// sendOne sends r of day d to every rua its domain publishes.
func (s *Sender) sendOne(ctx context.Context, d time.Time, r Report, retry bool) []Outcome {
	domain := r.Policies[0].Policy.Domain
	rec := s.Lookup(ctx, domain)
	switch {
	case rec == nil:
		return nil // did not ask for reports (RFC 8460 §3)
	case rec.Error != "":
		s.Log.Warn("tlsrpt: skipping a domain: its _smtp._tls record could not be looked up or is malformed", "domain", domain, "record", rec.Text, "error", rec.Error)
		return []Outcome{{Day: d.Format("2006-01-02"), Domain: domain, Result: "skipped", Error: strings.TrimPrefix(rec.Error, "discover: ")}}
	}
	return s.Deliverer.Deliver(ctx, r, rec.RUA, retry)
}
