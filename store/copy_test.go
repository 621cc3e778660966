package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// copySource is a SQLite database of host "old" with deliveries over 30
// days (the first 10 pruned), two overrides with history and a checkpoint.
func copySource(t *testing.T) *Store {
	t.Helper()
	ctx := context.Background()
	src, err := Open(ctx, filepath.Join(t.TempDir(), "src.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	src.now = func() time.Time { return t0 }
	if err := src.SetHost(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if err := fillGenerated(ctx, src, 12_000, 30, 5); err != nil {
		t.Fatal(err)
	}
	for _, o := range []Override{{Key: "example.com", Policy: "encrypt"}, {Key: ".corp.example", Policy: "verify", Note: "n"}} {
		if err := src.SetOverride(ctx, o, "alice"); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.SetOverride(ctx, Override{Key: "example.com", Policy: "secure"}, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := src.CommitBatch(ctx, "file:/var/log/mail.log", nil, []byte("position")); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Prune(ctx, t0.Add(-20*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	return src
}

func hostDeliveries(t *testing.T, s *Store, host string) int {
	t.Helper()
	n := 0
	if err := s.Deliveries(context.Background(), Filter{Host: host}, func(delivery.Delivery) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func summaryOf(t *testing.T, s *Store, host string) Summary {
	t.Helper()
	sum, err := s.Summary(context.Background(), Window{Since: t0.Add(-40 * 24 * time.Hour).Truncate(24 * time.Hour), Until: t0.Add(time.Hour), Host: host})
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// TestCopy: a copy into PostgreSQL holds exactly the source's data under
// the source's host name; a second copy adds nothing.
func TestCopy(t *testing.T) {
	ctx := context.Background()
	src := copySource(t)
	dst, _ := openPG(t)
	want := hostDeliveries(t, src, "")
	if want == 0 {
		t.Fatal("the source has no deliveries")
	}
	res, err := Copy(ctx, src, dst, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Deliveries != int64(want) || res.Overrides != 2 || res.History != 3 || res.Checkpoints != 1 || res.Rollups == 0 {
		t.Errorf("first copy: %+v; want %d deliveries, 2 overrides, 3 history entries, 1 checkpoint, some rollup rows", res, want)
	}
	if got := hostDeliveries(t, dst, "old"); got != want {
		t.Errorf("target holds %d deliveries of host old, the source %d", got, want)
	}
	if s, d := summaryOf(t, src, ""), summaryOf(t, dst, "old"); s.Deliveries == 0 || s.Deliveries != d.Deliveries || s.Encrypted != d.Encrypted || s.Plaintext != d.Plaintext {
		t.Errorf("report over the pruned and kept days: source %+v, target %+v", s, d)
	}
	again, err := Copy(ctx, src, dst, CopyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.Deliveries != 0 || again.Overrides != 0 || again.History != 0 || again.Checkpoints != 0 || again.Rollups != 0 || again.Skipped != int64(want) {
		t.Errorf("second copy added %+v; want nothing added and %d skipped", again, want)
	}
	if got := hostDeliveries(t, dst, ""); got != want {
		t.Errorf("after the second copy the target holds %d deliveries, want %d", got, want)
	}
	hist, err := dst.History(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 {
		t.Errorf("target history: %d entries, want 3: %+v", len(hist), hist)
	}
	cp, err := func() ([]byte, error) {
		if err := dst.SetHost(ctx, "old"); err != nil {
			return nil, err
		}
		return dst.Checkpoint(ctx, "file:/var/log/mail.log")
	}()
	if err != nil || string(cp) != "position" {
		t.Errorf("target checkpoint of host old: %q, %v; want %q", cp, err, "position")
	}
	// --host renames the source's host.
	other, _ := openPG(t)
	if _, err := Copy(ctx, src, other, CopyOptions{Host: "MX1.example.net"}); err != nil {
		t.Fatal(err)
	}
	if got := hostDeliveries(t, other, "mx1.example.net"); got != want {
		t.Errorf("with Host: %d deliveries of mx1.example.net, want %d", got, want)
	}
}

// TestCopyConflict: an override the target holds with another policy
// stops the copy before anything is copied, unless Prefer says which wins.
func TestCopyConflict(t *testing.T) {
	ctx := context.Background()
	src := copySource(t)
	dst, _ := openPG(t)
	if err := dst.SetOverride(ctx, Override{Key: "example.com", Policy: "dane"}, "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := Copy(ctx, src, dst, CopyOptions{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("copy onto a conflicting override: %v, want ErrConflict", err)
	}
	if n := hostDeliveries(t, dst, ""); n != 0 {
		t.Errorf("a refused copy stored %d deliveries", n)
	}
	policy := func() string {
		ovs, err := dst.Overrides(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range ovs {
			if o.Key == "example.com" {
				return o.Policy
			}
		}
		return ""
	}
	if _, err := Copy(ctx, src, dst, CopyOptions{Prefer: PreferTarget}); err != nil {
		t.Fatal(err)
	}
	if p := policy(); p != "dane" {
		t.Errorf("prefer target: example.com is %q, want dane", p)
	}
	res, err := Copy(ctx, src, dst, CopyOptions{Prefer: PreferSource})
	if err != nil {
		t.Fatal(err)
	}
	if p := policy(); p != "secure" || res.Overrides != 1 || res.Conflicts != 1 {
		t.Errorf("prefer source: example.com is %q, result %+v; want secure, 1 override replaced", p, res)
	}
	if _, err := Copy(ctx, src, dst, CopyOptions{Prefer: "both"}); !errors.Is(err, ErrBadInput) {
		t.Errorf("prefer both: %v, want ErrBadInput", err)
	}
}
