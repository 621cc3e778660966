package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// TestTrackTopDomains: the labels follow each answer of the query, a
// failed query keeps them, and the window is the last TopWindow.
func TestTrackTopDomains(t *testing.T) {
	m := New(Options{Follower: true, Domains: 2})
	d := m.Deliveries
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	answers := []struct {
		doms []string
		err  error
	}{{[]string{"a.example"}, nil}, {nil, errors.New("database locked")}, {[]string{"b.example"}, nil}}
	calls := make(chan int)
	i := 0
	top := func(ctx context.Context, since, until time.Time, n int) ([]string, error) {
		if !until.Equal(now) || !since.Equal(now.Add(-7*24*time.Hour)) || n != 2 {
			t.Errorf("top(%s, %s, %d), want the 7 days to %s and 2", since, until, n, now)
		}
		a := answers[i]
		i++
		defer func() { calls <- i }()
		return a.doms, a.err
	}
	ctx, cancel := context.WithCancel(context.Background())
	tick := make(chan time.Time)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.TrackTopDomains(ctx, top, 2, func() time.Time { return now }, tick, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	label := func() string { return d.domainLabel("a.example") + " " + d.domainLabel("b.example") }
	<-calls
	// The query answered before SetDomains ran; the next tick can only be
	// taken after it, so check once the loop is waiting again.
	tick <- now
	if got := label(); got != "a.example other" {
		t.Errorf("after the first query: %q", got)
	}
	<-calls // failed
	tick <- now
	if got := label(); got != "a.example other" {
		t.Errorf("after a failed query: %q, want the labels kept", got)
	}
	<-calls
	cancel()
	<-done
	if got := label(); got != "other b.example" {
		t.Errorf("after the third query: %q", got)
	}
	d.Add(&delivery.Delivery{Status: "sent", TLS: boolp(true), Domain: "b.example"})
	if v := value(d.total.WithLabelValues("b.example", "sent", "encrypted")); v != 1 {
		t.Errorf("b.example sent/encrypted = %v, want 1", v)
	}
}
