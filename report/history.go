package report

import (
	"context"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/discover"
	"github.com/mailtls/mailtls/store"
)

// HistoryStore is the part of the store `mailtls check` reads our own
// records of a domain through.
type HistoryStore interface {
	Summary(ctx context.Context, w store.Window) (store.Summary, error)
	Deliveries(ctx context.Context, f store.Filter, fn func(delivery.Delivery) error) error
}

// DomainHistory is the History of a check (discover.Result): it
// summarises our delivery records for domain over the last
// discover.HistoryDays before now and finds the newest plaintext delivery.
func DomainHistory(ctx context.Context, st HistoryStore, domain string, now time.Time) (*discover.History, error) {
	since := now.AddDate(0, 0, -discover.HistoryDays)
	s, err := st.Summary(ctx, store.Window{Since: since, Until: now, Domain: domain})
	if err != nil {
		return nil, err
	}
	h := &discover.History{Since: since.UTC(), Deliveries: s.Deliveries, Encrypted: s.Encrypted, Plaintext: s.Plaintext,
		Unknown: s.Unknown, Coverage: s.Coverage, ByTrust: s.ByTrust}
	if h.ByTrust == nil {
		h.ByTrust = map[string]int64{}
	}
	if s.Plaintext == 0 {
		return h, nil
	}
	err = st.Deliveries(ctx, store.Filter{Domain: domain, Since: since, Until: now}, func(d delivery.Delivery) error {
		if d.Status == delivery.Sent && d.TLS != nil && !*d.TLS {
			t := d.Time.UTC()
			h.LastPlaintext = &t
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}
