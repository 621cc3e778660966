package discover

import (
	"context"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/store"
)

// HistoryDays is how far back `check` looks in our own delivery records.
const HistoryDays = 30

// History is what our own records say about a domain.
type History struct {
	Since      time.Time        `json:"since"`
	Deliveries int64            `json:"deliveries"`
	Encrypted  int64            `json:"encrypted"`
	Plaintext  int64            `json:"plaintext"`
	Unknown    int64            `json:"unknown"`
	Coverage   float64          `json:"coverage"`
	ByTrust    map[string]int64 `json:"by_trust"`
	// LastPlaintext is the newest delivery that went out without TLS.
	LastPlaintext *time.Time `json:"last_plaintext"`
}

// HistoryStore is the part of the store a check reads our own records
// through (it never writes).
type HistoryStore interface {
	Summary(ctx context.Context, w store.Window) (store.Summary, error)
	Deliveries(ctx context.Context, f store.Filter, fn func(delivery.Delivery) error) error
}

// DomainHistory summarises our delivery records for domain over the last
// HistoryDays before now and finds the newest plaintext delivery.
func DomainHistory(ctx context.Context, st HistoryStore, domain string, now time.Time) (*History, error) {
	since := now.AddDate(0, 0, -HistoryDays)
	s, err := st.Summary(ctx, store.Window{Since: since, Until: now, Domain: domain})
	if err != nil {
		return nil, err
	}
	h := &History{Since: since.UTC(), Deliveries: s.Deliveries, Encrypted: s.Encrypted, Plaintext: s.Plaintext,
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
