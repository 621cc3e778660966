package report

import (
	"context"
	"testing"
	"time"

	"github.com/mailtls/mailtls/discover"
	"github.com/mailtls/mailtls/store"
)

type fakeOverrides struct {
	ovs   []store.Override
	actor string
}

func (f *fakeOverrides) Overrides(context.Context) ([]store.Override, error) { return f.ovs, nil }

func (f *fakeOverrides) SetOverride(_ context.Context, o store.Override, actor string) error {
	f.ovs, f.actor = append(f.ovs, o), actor
	return nil
}

func TestApplyRecommendation(t *testing.T) {
	ctx := context.Background()
	f := &fakeOverrides{ovs: []store.Override{{Key: "other.example", Policy: "verify"}}}
	if cur, err := CurrentOverride(ctx, f, "example.com"); cur != nil || err != nil {
		t.Fatalf("CurrentOverride without one = %v, %v", cur, err)
	}
	rec := discover.Recommendation{Level: "encrypt", Policy: "encrypt"}
	now := time.Date(2026, 12, 3, 23, 0, 0, 0, time.FixedZone("x", -3600))
	applied, lowered, err := ApplyRecommendation(ctx, f, "tester", "example.com", rec, nil, false, now)
	if err != nil || !applied || lowered {
		t.Fatalf("ApplyRecommendation = %v, %v, %v", applied, lowered, err)
	}
	got := f.ovs[len(f.ovs)-1]
	if got.Key != "example.com" || got.Policy != "encrypt" || got.Note != "set by mailtls check on 2026-12-04: encrypt" || f.actor != "tester" {
		t.Errorf("set %+v by %q", got, f.actor)
	}
	cur, err := CurrentOverride(ctx, f, "example.com")
	if err != nil || cur == nil || *cur != "encrypt" {
		t.Fatalf("CurrentOverride = %v, %v", cur, err)
	}
	// A weaker recommendation does not replace the current policy without force.
	n := len(f.ovs)
	applied, lowered, err = ApplyRecommendation(ctx, f, "tester", "example.com", discover.Recommendation{Level: "may", Policy: "may"}, cur, false, now)
	if applied || len(f.ovs) != n {
		t.Errorf("lowering without force: applied %v, lowered %v, err %v", applied, lowered, err)
	}
}
