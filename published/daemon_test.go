package published

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestDescribe(t *testing.T) {
	yes := true
	res := Result{Source: SourceDANE, Policy: "dane-only", CacheAge: 90 * time.Second, TLSRPT: "policy_type=tlsa",
		Evidence: Evidence{
			MX: []MXEvidence{
				{Host: "mx1.example.com", TLSA: []string{"3 1 1 ab", "2 1 1 cd"}, Authenticated: true, Usable: true},
				{Host: "mx2.example.com", STSMatch: &yes, Error: "timeout"},
				{Host: "mx3.example.com"},
			},
			MTASTS: &STSEvidence{ID: "20260101", Mode: "testing", MX: []string{"mx1.example.com"}, MaxAge: 86400, Answer: "secure match=mx1.example.com"},
			Notes:  []string{"mta-sts: testing mode"},
		}}
	got := strings.Join(res.Describe(), "\n")
	for _, want := range []string{
		`published: dane answers "dane-only" (resolved 1m30s ago)`,
		"  mx mx1.example.com: TLSA 3 1 1 ab | 2 1 1 cd, authenticated true, usable true",
		"  mx mx2.example.com; matches the MTA-STS patterns: true; error: timeout",
		"  mx mx3.example.com: no TLSA records",
		"  mta-sts: policy id 20260101, mode testing, mx mx1.example.com, max_age 86400",
		"  mta-sts testing: enforce would answer secure match=mx1.example.com",
		"  tlsrpt (map name tlspolicy-tlsrpt, or --tlsrpt-attributes): policy_type=tlsa",
		"  mta-sts: testing mode",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Describe lacks %q:\n%s", want, got)
		}
	}
	if got := (Result{Pending: true}).Describe(); len(got) != 1 || got[0] != "published: not resolved yet" {
		t.Errorf("pending: %q", got)
	}
	if got := (Result{Source: SourceNone}).Describe(); len(got) != 1 || !strings.HasPrefix(got[0], "published: nothing applies") {
		t.Errorf("none: %q", got)
	}
}

// TestReadOnly: reads go through, writes change nothing.
func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	mem := &MemStore{}
	if err := mem.SavePublished(ctx, "a.example", "dane", "dane-only", []byte("x"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ro := ReadOnly(mem)
	if _, ok := ro.(AnswerStore); ok {
		t.Error("ReadOnly would log answers")
	}
	if err := ro.SavePublished(ctx, "b.example", "dane", "dane-only", []byte("y"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := ro.DeletePublished(ctx, "a.example"); err != nil {
		t.Fatal(err)
	}
	if data, ok, err := ro.PublishedEntry(ctx, "a.example"); err != nil || !ok || string(data) != "x" {
		t.Errorf("a.example through ReadOnly: %q %v %v", data, ok, err)
	}
	if _, ok, _ := mem.PublishedEntry(ctx, "b.example"); ok {
		t.Error("ReadOnly saved b.example")
	}
	n := 0
	if err := ro.LoadPublished(ctx, func(string, []byte) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("LoadPublished: %d entries, %v", n, err)
	}
}
