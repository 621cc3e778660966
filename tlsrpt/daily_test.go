package tlsrpt

import (
	"reflect"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

func TestNextRun(t *testing.T) {
	for _, tc := range []struct {
		now   time.Time
		delay time.Duration
		first bool
		want  time.Time
	}{
		{day.Add(10 * time.Hour), 2 * time.Hour, false, day.AddDate(0, 0, 1).Add(2 * time.Hour)},
		{day.Add(time.Hour), 2 * time.Hour, true, day.Add(2 * time.Hour)},                                   // start before today's slot
		{day.Add(10 * time.Hour), 2*time.Hour + 5*time.Minute, true, day.Add(10*time.Hour + 5*time.Minute)}, // start after it: soon
		{day.Add(23*time.Hour + 59*time.Minute), 0, false, day.AddDate(0, 0, 1)},
	} {
		if got := NextRun(tc.now, tc.delay, tc.first); !got.Equal(tc.want) {
			t.Errorf("NextRun(%s, %s, %v) = %s, want %s", tc.now, tc.delay, tc.first, got, tc.want)
		}
	}
}

func TestSendDays(t *testing.T) {
	got := SendDays(day, []string{"2026-11-28", "2026-11-30", "bad", "2026-11-28", "2026-11-29"})
	want := []time.Time{day, day.AddDate(0, 0, -2), day.AddDate(0, 0, -1)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SendDays = %v, want %v", got, want)
	}
}

// TestDaily: reports in domain order, one per domain with sessions;
// internal hops left out; the answer log wins over the cache, and a
// domain with neither is no-policy-found.
func TestDaily(t *testing.T) {
	d := NewDaily(Identity{Organization: "Org", Contact: "mailto:t@example.org"}, day.Add(5*time.Hour))
	if s, e := d.Span(); !s.Equal(day) || !e.Equal(day.AddDate(0, 0, 1)) {
		t.Fatalf("Span = %s, %s", s, e)
	}
	add := func(x delivery.Delivery) {
		if err := d.AddDelivery(x); err != nil {
			t.Fatal(err)
		}
	}
	for _, x := range sampleDeliveries() {
		add(x)
	}
	b := row(100, 300, "BBB", "b@b.example", "mx.b.example[192.0.2.9]:25", "sent", "250 ok", tp(true))
	b.Domain = "b.example"
	add(b)
	in := row(200, 400, "CCC", "c@c.example", "127.0.0.1[127.0.0.1]:10025", "sent", "250 ok", tp(false))
	in.Domain, in.Internal = "c.example", true
	add(in)
	if d.Wants("c.example") || !d.Wants("b.example") {
		t.Errorf("Wants: an internal hop is no session of c.example; b.example has one")
	}
	sts := Policy{Type: PolicySTS, Domain: "dest.example", MXHost: []string{"*.dest.example"}}
	d.SetCached("dest.example", Policy{Type: PolicyTLSA, Domain: "dest.example"}, nil)
	d.AddChange("dest.example", day.AddDate(0, 0, -1), sts)
	d.AddChange("dest.example", day.AddDate(0, 0, 2), Policy{Type: PolicyTLSA}) // after the day
	rs := d.Reports()
	if len(rs) != 2 || rs[0].Policies[0].Policy.Domain != "b.example" || rs[1].Policies[0].Policy.Domain != "dest.example" {
		t.Fatalf("reports: %+v, want b.example then dest.example", rs)
	}
	if p := rs[0].Policies[0].Policy; p.Type != PolicyNoPolicyFound {
		t.Errorf("b.example: %+v, want no-policy-found", p)
	}
	if len(rs[1].Policies) != 1 || !reflect.DeepEqual(rs[1].Policies[0].Policy, sts) {
		t.Errorf("dest.example: %+v, want the logged sts policy only", rs[1].Policies)
	}
	want := Build(Input{Organization: "Org", Contact: "mailto:t@example.org", Domain: "dest.example", Day: day,
		Periods: InForce(day, []PolicyPeriod{{From: day.AddDate(0, 0, -1), Policy: sts}}), Deliveries: sampleDeliveries()})
	if !reflect.DeepEqual(rs[1], want) {
		t.Errorf("dest.example report:\n%+v\nwant\n%+v", rs[1], want)
	}
}
