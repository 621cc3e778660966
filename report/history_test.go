package report

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/discover"
	"github.com/mailtls/mailtls/store"
)

type fakeHistory struct {
	sum  store.Summary
	rows []delivery.Delivery
	err  error
}

func (f fakeHistory) Summary(context.Context, store.Window) (store.Summary, error) {
	return f.sum, f.err
}

func (f fakeHistory) Deliveries(_ context.Context, _ store.Filter, fn func(delivery.Delivery) error) error {
	for _, d := range f.rows {
		if err := fn(d); err != nil {
			return err
		}
	}
	return nil
}

func TestDomainHistory(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	on, off := true, false
	t1, t2 := now.Add(-48*time.Hour), now.Add(-time.Hour)
	f := fakeHistory{sum: store.Summary{Deliveries: 3, Encrypted: 1, Plaintext: 2}, rows: []delivery.Delivery{
		{Time: t1, Status: delivery.Sent, TLS: &off},
		{Time: t2, Status: delivery.Sent, TLS: &off},
		{Time: now, Status: delivery.Deferred, TLS: &off},
		{Time: now, Status: delivery.Sent, TLS: &on},
	}}
	h, err := DomainHistory(context.Background(), f, "example.com", now)
	if err != nil || h.LastPlaintext == nil || !h.LastPlaintext.Equal(t2) || h.ByTrust == nil || !h.Since.Equal(now.AddDate(0, 0, -discover.HistoryDays)) {
		t.Fatalf("DomainHistory = %+v, %v; want the last plaintext sent at %v", h, err, t2)
	}
	f.err = errors.New("locked")
	if _, err := DomainHistory(context.Background(), f, "example.com", now); err == nil {
		t.Error("a failing summary is not an error")
	}
}
