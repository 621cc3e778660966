package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/published"
)

// The store keeps the published-policy cache for package published.
var _ published.Store = (*Store)(nil)

type pubRow struct {
	domain, data string
}

func loadPublished(t *testing.T, s *Store) []pubRow {
	t.Helper()
	var rows []pubRow
	if err := s.LoadPublished(context.Background(), func(d string, data []byte) error {
		rows = append(rows, pubRow{d, string(data)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestPublished: entries are saved, replaced, loaded in domain order,
// deleted and pruned by expiry; bad input is refused; they survive a
// reopen.
func TestPublished(t *testing.T) {
	s, path := openTest(t)
	ctx := context.Background()
	if err := s.SavePublished(ctx, "b.example", "mta-sts", "secure match=mx.b.example servername=hostname", []byte(`{"v":1}`), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.SavePublished(ctx, "a.example", "dane", "dane-only", []byte(`{"v":0}`), t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.SavePublished(ctx, "a.example", "none", "", []byte(`{"v":2}`), t0.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	rows := loadPublished(t, s)
	if len(rows) != 2 || rows[0] != (pubRow{"a.example", `{"v":2}`}) || rows[1] != (pubRow{"b.example", `{"v":1}`}) {
		t.Errorf("loaded %v", rows)
	}
	w, _ := s.writer()
	var src, pol string
	var saved int64
	if err := w.QueryRow(`SELECT source, policy, saved FROM published WHERE domain = 'b.example'`).Scan(&src, &pol, &saved); err != nil ||
		src != "mta-sts" || pol != "secure match=mx.b.example servername=hostname" || saved != t0.Unix() {
		t.Errorf("b.example row: %q %q %d, %v", src, pol, saved, err)
	}
	for _, bad := range [][2]string{{"", "none"}, {"a b.example", "none"}, {"c.example", ""}, {"c.example", "x\n"}} {
		if err := s.SavePublished(ctx, bad[0], bad[1], "", nil, t0); err == nil || !strings.Contains(err.Error(), "published") {
			t.Errorf("SavePublished(%q, %q) = %v; want an error", bad[0], bad[1], err)
		}
	}
	if n, err := s.PrunePublished(ctx, t0.Add(2*time.Hour)); n != 1 || err != nil {
		t.Errorf("PrunePublished = %d, %v; want 1", n, err)
	}
	s.Close()
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if rows := loadPublished(t, s2); len(rows) != 1 || rows[0].domain != "a.example" {
		t.Errorf("after prune and reopen: %v", rows)
	}
	if err := s2.DeletePublished(ctx, "a.example"); err != nil {
		t.Fatal(err)
	}
	if rows := loadPublished(t, s2); len(rows) != 0 {
		t.Errorf("after delete: %v", rows)
	}
}

// TestActiveDomains: the domains with deliveries since a day, whatever
// their status; older ones are left out.
func TestActiveDomains(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	ds := []delivery.Delivery{
		{Time: t0.AddDate(0, 0, -40), Domain: "old.example", QueueID: "A1", Key: keyOf(1), Recipient: "a@old.example", Relay: "none", Status: "sent"},
		{Time: t0.AddDate(0, 0, -3), Domain: "recent.example", QueueID: "A2", Key: keyOf(2), Recipient: "a@recent.example", Relay: "none", Status: "deferred"},
		{Time: t0, Domain: "today.example", QueueID: "A3", Key: keyOf(3), Recipient: "b@today.example", Relay: "none", Status: "sent"},
		{Time: t0, Domain: "today.example", QueueID: "A4", Key: keyOf(4), Recipient: "c@today.example", Relay: "none", Status: "sent"},
	}
	if _, err := s.AddDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}
	got, err := s.ActiveDomains(ctx, t0.AddDate(0, 0, -30))
	if err != nil || strings.Join(got, " ") != "recent.example today.example" {
		t.Errorf("ActiveDomains = %q, %v", got, err)
	}
}
