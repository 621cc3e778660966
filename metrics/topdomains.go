package metrics

import (
	"context"
	"log/slog"
	"time"
)

// TopWindow is how far back the domains with a label of their own are
// ranked by volume.
const TopWindow = 7 * 24 * time.Hour

// TopFunc returns the (at most) n domains with the most sent deliveries
// in [since, until), most first.
type TopFunc func(ctx context.Context, since, until time.Time, n int) ([]string, error)

// TrackTopDomains gives the n domains with the most sent deliveries over
// the last TopWindow a label of their own (SetDomains): at once, then at
// every tick, until ctx ends. A failed query keeps the labels as they
// were until the next tick.
func (d *Deliveries) TrackTopDomains(ctx context.Context, top TopFunc, n int, now func() time.Time, tick <-chan time.Time, log *slog.Logger) {
	for {
		t := now()
		doms, err := top(ctx, t.Add(-TopWindow), t, n)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Error("finding the top domains for --metrics-domains failed; retrying in an hour", "err", err)
		} else {
			d.SetDomains(doms)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
	}
}
