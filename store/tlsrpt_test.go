package store

import (
	"context"
	"errors"
	"testing"
)

// TestTLSRPTSendOnce: a report is claimed once per (domain, day, rua); a
// claim without an outcome (a crash while sending) is never claimed
// again; a failed send is claimed again only on a retry.
func TestTLSRPTSendOnce(t *testing.T) {
	s, path := openTest(t)
	ctx := context.Background()
	claim := func(domain, rua string, retry, want bool) {
		t.Helper()
		got, err := s.ClaimTLSRPTSend(ctx, domain, "2026-11-30", rua, retry)
		if err != nil || got != want {
			t.Fatalf("claim %s %s retry=%v = %v, %v; want %v", domain, rua, retry, got, err, want)
		}
	}
	claim("a.example", "mailto:r@a.example", false, true)
	claim("a.example", "mailto:r@a.example", true, false) // under way
	if err := s.FinishTLSRPTSend(ctx, "a.example", "2026-11-30", "mailto:r@a.example", nil); err != nil {
		t.Fatal(err)
	}
	claim("a.example", "mailto:r@a.example", true, false) // sent
	claim("a.example", "https://r.a.example/", false, true)
	if err := s.FinishTLSRPTSend(ctx, "a.example", "2026-11-30", "https://r.a.example/", errors.New("HTTP 503")); err != nil {
		t.Fatal(err)
	}
	claim("a.example", "https://r.a.example/", false, false) // failed, no retry asked
	claim("a.example", "https://r.a.example/", true, true)   // retried
	claim("b.example", "mailto:r@b.example", false, true)    // then a "crash"
	if err := s.FinishTLSRPTSend(ctx, "c.example", "2026-11-30", "mailto:r@c.example", nil); err == nil {
		t.Error("finishing a send that was never claimed succeeded")
	}

	s.Close()
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	s = s2
	claim("b.example", "mailto:r@b.example", true, false) // after the crash: never twice
	got, err := s.TLSRPTSends(ctx, "2026-11-30", "2026-11-30")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		domain, rua, state string
		attempts           int
	}{
		{"a.example", "https://r.a.example/", TLSRPTSending, 2},
		{"a.example", "mailto:r@a.example", TLSRPTSent, 1},
		{"b.example", "mailto:r@b.example", TLSRPTSending, 1},
	}
	if len(got) != len(want) {
		t.Fatalf("sends %+v", got)
	}
	for i, w := range want {
		if g := got[i]; g.Domain != w.domain || g.RUA != w.rua || g.State != w.state || g.Attempts != w.attempts {
			t.Errorf("send %d = %+v, want %+v", i, g, w)
		}
	}
	if _, err := s.ClaimTLSRPTSend(ctx, "", "2026-11-30", "mailto:x@y", false); !errors.Is(err, ErrBadInput) {
		t.Errorf("empty domain: %v", err)
	}
}
