package store

import (
	"context"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// TestOverridesInForce: an override counts only what it governed while it
// was in force, and plaintext under a mandatory level is a warning.
func TestOverridesInForce(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	base := t0.Add(-5 * 24 * time.Hour).Add(-7*time.Hour - 13*time.Minute) // not on a day boundary
	at := func(h float64) time.Time { return base.Add(time.Duration(h * float64(time.Hour))) }
	var ds []delivery.Delivery
	deliver := func(h float64, domain string, tls bool) delivery.Delivery {
		d := testDelivery(len(ds)+1, at(h), domain)
		if !tls {
			d.TLS, d.TLSTrust, d.TLSProtocol, d.TLSCipher = bptr(false), "", "", ""
		}
		ds = append(ds, d)
		return d
	}
	set := func(h float64, key, policy string, expires time.Time) {
		t.Helper()
		s.now = func() time.Time { return at(h) }
		if err := s.SetOverride(ctx, Override{Key: key, Policy: policy, Expires: expires}, "tester"); err != nil {
			t.Fatal(err)
		}
	}

	// forced.example: plaintext before the override; encrypt (with one
	// plaintext delivery: Postfix did not ask); removed; set again to may.
	for h := 1.0; h <= 5; h++ {
		deliver(h, "forced.example", false)
	}
	set(10, "forced.example", "encrypt", time.Time{})
	deliver(11, "forced.example", true)
	deliver(30, "forced.example", true)
	deliver(50, "forced.example", true)
	deliver(55, "forced.example", false) // the content filter's hop: not a leak
	ds[len(ds)-1].Internal, ds[len(ds)-1].Relay = true, "127.0.0.1[127.0.0.1]:10024"
	leak := deliver(60, "forced.example", false)
	s.now = func() time.Time { return at(70) }
	if err := s.RemoveOverride(ctx, "forced.example", "tester"); err != nil {
		t.Fatal(err)
	}
	deliver(75, "forced.example", false)
	deliver(80, "forced.example", false)
	set(90, "forced.example", "may", time.Time{})
	deliver(95, "forced.example", false)

	// .example.org forced, a.example.org (its own key, may) is not.
	set(0.5, ".example.org", "encrypt", time.Time{})
	set(0.6, "a.example.org", "may", time.Time{})
	deliver(2, "a.example.org", false)
	sub := deliver(3, "b.example.org", false)
	deliver(4, "example.org", false)
	deliver(5, "c.b.example.org", true)

	// exp.example: encrypt until it expires.
	set(0.7, "exp.example", "encrypt", at(24))
	expLeak := deliver(2.5, "exp.example", false)
	deliver(30, "exp.example", false)

	// A transport next-hop, matched by the relay.
	set(0.8, "[relay.example]:587", "verify", time.Time{})
	r := deliver(1.5, "x.example.com", false)
	ds[len(ds)-1].Relay = "relay.example[192.0.2.5]:587"
	r.Relay = ds[len(ds)-1].Relay

	// Nested: .b.example.net takes its subdomains while it is in force,
	// c.b.example.net always; .example.net the rest.
	set(0.9, ".example.net", "encrypt", time.Time{})
	set(1, ".b.example.net", "may", time.Time{})
	set(1.1, "c.b.example.net", "may", time.Time{})
	deliver(5, "x.b.example.net", false)
	s.now = func() time.Time { return at(10) }
	if err := s.RemoveOverride(ctx, ".b.example.net", "tester"); err != nil {
		t.Fatal(err)
	}
	nested := deliver(20, "y.b.example.net", false)
	deliver(21, "c.b.example.net", false)
	deliver(22, "d.example.net", true)

	if _, err := s.AddDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}
	rows, err := s.OverridesInForce(ctx, Window{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	warns, err := s.ForcedPlaintextIn(ctx, Window{})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		sent, enc, plain int64
		since            time.Time
	}
	want := map[string]row{
		"forced.example":      {5, 3, 2, at(90)},
		".example.org":        {2, 1, 1, at(0.5)},
		"a.example.org":       {1, 0, 1, at(0.6)},
		"exp.example":         {1, 0, 1, time.Time{}},
		"[relay.example]:587": {1, 0, 1, at(0.8)},
		".example.net":        {2, 1, 1, at(0.9)},
		"c.b.example.net":     {1, 0, 1, at(1.1)},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v, want %d", rows, len(want))
	}
	for _, r := range rows {
		w, ok := want[r.Key]
		got := row{r.Sent, r.Encrypted, r.Plaintext, r.InForceSince}
		if !ok || got.sent != w.sent || got.enc != w.enc || got.plain != w.plain || !got.since.Equal(w.since.Truncate(time.Second)) {
			t.Errorf("%s: sent %d encrypted %d plaintext %d since %v; want %+v", r.Key, got.sent, got.enc, got.plain, got.since, w)
		}
	}
	wantWarn := map[string]struct {
		n      int64
		first  delivery.Delivery
		policy string
	}{
		"forced.example":      {1, leak, "encrypt"},
		".example.org":        {1, sub, "encrypt"},
		"exp.example":         {1, expLeak, "encrypt"},
		"[relay.example]:587": {1, r, "verify"},
		".example.net":        {1, nested, "encrypt"},
	}
	if len(warns) != len(wantWarn) {
		t.Errorf("warnings %+v, want %d", warns, len(wantWarn))
	}
	for _, w := range warns {
		x, ok := wantWarn[w.Key]
		if !ok || w.Count != x.n || !w.HaveFirst || w.First.QueueID != x.first.QueueID || w.Policy != x.policy {
			t.Errorf("warning %s: %d, first %v (%s), policy %s; want %d, first %s, policy %s", w.Key, w.Count, w.HaveFirst, w.First.QueueID, w.Policy, x.n, x.first.QueueID, x.policy)
		}
	}

	// A window intersects the in-force intervals.
	rows, err = s.OverridesInForce(ctx, Window{Since: at(40), Until: at(100)}, t0)
	if err != nil {
		t.Fatal(err)
	}
	warns, err = s.ForcedPlaintextIn(ctx, Window{Since: at(40), Until: at(100)})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Key == "forced.example" && (r.Sent != 3 || r.Encrypted != 1 || r.Plaintext != 2) {
			t.Errorf("forced.example in the window: %+v; want 3 sent, 1 encrypted, 2 plaintext", r)
		}
		if r.Key == "exp.example" && r.Sent != 0 {
			t.Errorf("exp.example after it expired: %+v; want nothing", r)
		}
	}
	if len(warns) != 1 || warns[0].Key != "forced.example" || warns[0].Count != 1 {
		t.Errorf("warnings in the window: %+v; want forced.example once", warns)
	}
}
