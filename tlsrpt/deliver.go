package tlsrpt

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// RetryFor is how long after the end of its day a failed send is tried
// again on later runs.
const RetryFor = 3 * 24 * time.Hour

// Claims records which reports were sent (store.Store implements it).
type Claims interface {
	ClaimTLSRPTSend(ctx context.Context, domain, day, rua string, retry bool) (bool, error)
	FinishTLSRPTSend(ctx context.Context, domain, day, rua string, sendErr error) error
}

// Mailer submits a message (Sendmail).
type Mailer interface {
	Send(ctx context.Context, from, to string, msg []byte) error
}

// Poster posts a compressed report (HTTPS).
type Poster interface {
	Post(ctx context.Context, url string, gz []byte) error
}

// Deliverer sends reports to the rua URIs of their policy domain.
type Deliverer struct {
	Claims Claims
	Mail   Mailer
	Post   Poster
	From   string // our contact address (ContactAddress)
	Now    func() time.Time
	Log    *slog.Logger
	// DryRun: say what would be sent; send and record nothing.
	DryRun bool
}

// Outcome is what happened to one (report, rua).
type Outcome struct {
	Domain string `json:"domain"`
	Day    string `json:"day"`
	RUA    string `json:"rua"`
	// Result is sent, failed, done (sent or claimed before: not sent
	// again) or dry-run.
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
}

// Deliver sends r to each of ruas, at most once per (domain, day, rua):
// each send is claimed in Claims before it is attempted. retry allows a
// send that failed before to be claimed again.
func (d *Deliverer) Deliver(ctx context.Context, r Report, ruas []string, retry bool) []Outcome {
	domain := r.Policies[0].Policy.Domain
	day := r.DateRange.Start[:len("2006-01-02")]
	var out []Outcome
	for _, rua := range ruas {
		o := Outcome{Domain: domain, Day: day, RUA: rua}
		send, err := d.prepare(r, rua)
		switch {
		case err != nil:
			o.Result, o.Error = "failed", err.Error()
		case d.DryRun:
			o.Result = "dry-run"
		default:
			ok, err := d.Claims.ClaimTLSRPTSend(ctx, domain, day, rua, retry)
			switch {
			case err != nil:
				o.Result, o.Error = "failed", err.Error()
			case !ok:
				o.Result = "done"
			default:
				sendErr := send(ctx)
				if err := d.Claims.FinishTLSRPTSend(ctx, domain, day, rua, sendErr); err != nil {
					d.Log.Error("tlsrpt: recording a send failed", "domain", domain, "day", day, "rua", rua, "error", err)
				}
				o.Result = "sent"
				if sendErr != nil {
					o.Result, o.Error = "failed", sendErr.Error()
				}
			}
		}
		if o.Error != "" {
			d.Log.Warn("tlsrpt: report not sent", "domain", domain, "day", day, "rua", rua, "error", o.Error)
		} else if o.Result == "sent" {
			d.Log.Info("tlsrpt: report sent", "domain", domain, "day", day, "rua", rua)
		}
		out = append(out, o)
	}
	return out
}

// prepare builds the send of r to rua; errors here are about the report
// or the URI, before anything is claimed.
func (d *Deliverer) prepare(r Report, rua string) (func(context.Context) error, error) {
	u, err := url.Parse(rua)
	if err != nil {
		return nil, fmt.Errorf("rua %q: %v", rua, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "mailto":
		to, err := MailtoAddress(rua)
		if err != nil {
			return nil, err
		}
		msg, err := MailMessage(r, d.From, to, d.Now())
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error { return d.Mail.Send(ctx, d.From, to, msg) }, nil
	case "https":
		gz, err := Gzip(r)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error { return d.Post.Post(ctx, rua, gz) }, nil
	}
	return nil, fmt.Errorf("rua %q: scheme must be mailto or https", rua)
}
