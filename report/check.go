package report

import (
	"context"
	"fmt"
	"time"

	"github.com/mailtls/mailtls/discover"
	"github.com/mailtls/mailtls/store"
)

// OverrideStore is the part of the store `mailtls check` reads and, with
// --apply, sets a domain's override through.
type OverrideStore interface {
	Overrides(ctx context.Context) ([]store.Override, error)
	SetOverride(ctx context.Context, o store.Override, actor string) error
}

// CurrentOverride returns the policy of the exact override for key, or
// nil when there is none.
func CurrentOverride(ctx context.Context, st OverrideStore, key string) (*string, error) {
	ovs, err := st.Overrides(ctx)
	if err != nil {
		return nil, err
	}
	for _, o := range ovs {
		if o.Key == key {
			p := o.Policy
			return &p, nil
		}
	}
	return nil, nil
}

// ApplyRecommendation sets the recommended policy as the override for
// key, as rec.Apply decides over the current policy cur (nil: none);
// lowered tells that force was needed. The note records the day (of now)
// and the recommended level.
func ApplyRecommendation(ctx context.Context, st OverrideStore, actor, key string, rec discover.Recommendation, cur *string, force bool, now time.Time) (applied, lowered bool, err error) {
	a, err := rec.Apply(key, cur, force)
	if err != nil || !a.Set {
		return false, a.Lowered, err
	}
	o := store.Override{Key: key, Policy: a.Policy.String(),
		Note: fmt.Sprintf("set by mailtls check on %s: %s", now.UTC().Format("2006-01-02"), rec.Level)}
	if err := st.SetOverride(ctx, o, actor); err != nil {
		return false, a.Lowered, err
	}
	return true, a.Lowered, nil
}
