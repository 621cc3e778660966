package store

import (
	"context"
	"strings"
	"testing"
)

// TestLockFile: while LockFile holds the lock, another writer cannot take
// it (it fails after the busy timeout) and readers go on; after release,
// writes succeed.
func TestLockFile(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	if err := s.SetOverride(ctx, Override{Key: "example.com", Policy: "encrypt"}, "a"); err != nil {
		t.Fatal(err)
	}
	release, err := LockFile(ctx, path, false)
	if err != nil {
		t.Fatalf("LockFile: %v", err)
	}
	if r2, err := LockFile(ctx, path, false); err == nil {
		r2()
		release()
		t.Fatal("a second LockFile took the lock while the first held it")
	} else if !strings.Contains(err.Error(), path) {
		t.Errorf("LockFile error %q does not name the database", err)
	}
	if ovs, err := s.Overrides(ctx); err != nil || len(ovs) != 1 {
		t.Errorf("reading while locked: %d overrides, err %v; want 1, nil", len(ovs), err)
	}
	if err := release(); err != nil {
		t.Fatalf("release: %v", err)
	}
	if err := s.SetOverride(ctx, Override{Key: "example.com", Policy: "secure"}, "a"); err != nil {
		t.Errorf("SetOverride after release: %v", err)
	}
	// With the store's connections open, SQLite usually refuses the
	// exclusive mode; taken or refused, nothing stays locked afterwards.
	if release, err = LockFile(ctx, path, true); err == nil {
		if err := release(); err != nil {
			t.Fatalf("release of the exclusive lock: %v", err)
		}
	}
	if werr := s.SetOverride(ctx, Override{Key: "example.com", Policy: "encrypt"}, "a"); werr != nil {
		t.Errorf("SetOverride after LockFile(exclusive) (which said %v): %v", err, werr)
	}
}
