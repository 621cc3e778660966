package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/store"
)

// deferredIn is the number of deliveries a dry-run sentence says would
// have been deferred.
func deferredIn(t *testing.T, out string) int64 {
	t.Helper()
	if regexp.MustCompile(`would not defer any of them`).MatchString(out) {
		return 0
	}
	for _, re := range []string{`: (\d+) would have been deferred`, `; (\d+) w(?:as|ere) plaintext and would have been deferred`} {
		if m := regexp.MustCompile(re).FindStringSubmatch(out); m != nil {
			n, err := strconv.ParseInt(m[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("dry run says nothing about deferrals: %q", out)
	return 0
}

// TestDryRunTextAgreesWithStore: for every level, what `policy set
// --dry-run` says would be deferred is what store.DryRun counted.
func TestDryRunTextAgreesWithStore(t *testing.T) {
	c := newCLI(t)
	now := time.Now().UTC()
	var p plantedLog
	for i, trust := range []string{"Verified", "Untrusted", "", "Anonymous", "", "Untrusted", "Trusted"} {
		p.deliver(now.Add(time.Duration(i-10)*time.Hour), "mixed.example", trust)
	}
	f := filepath.Join(t.TempDir(), "planted.log")
	if err := os.WriteFile(f, []byte(p.b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok("import", "--quiet", f)
	st, err := store.Open(context.Background(), c.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, level := range policyd.Levels() {
		args := []string{"policy", "set", "mixed.example", level, "--dry-run"}
		if level == "fingerprint" {
			args = append(args, "match="+strings.TrimSuffix(strings.Repeat("AB:", 32), ":"))
		}
		out := c.ok(args...)
		r, err := st.DryRun(context.Background(), "mixed.example", level, now.Add(-30*24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if r.Plaintext != 2 || r.Unverified != 3 {
			t.Fatalf("fixture: %+v, want 2 plaintext and 3 unverified", r)
		}
		if got := deferredIn(t, out); got != r.WouldDefer {
			t.Errorf("%s: the command says %d deferred, the store %d: %q", level, got, r.WouldDefer, out)
		}
	}
}
