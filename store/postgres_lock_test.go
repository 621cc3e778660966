package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/pgtest"
)

// TestLockSourceSurvivesRestart: a follower's lock on PostgreSQL is taken
// again after the server restarts, so a second follower is still refused;
// after release it can be taken.
func TestLockSourceSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t)
	a, err := Open(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	release, err := a.LockSource(ctx, "mx-a", "file:/var/log/mail.log")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.LockSource(ctx, "mx-a", "file:/var/log/mail.log"); !errors.Is(err, ErrSourceLocked) {
		t.Fatalf("second lock before the restart: %v, want ErrSourceLocked", err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		rel, err := b.LockSource(ctx, "mx-a", "file:/var/log/mail.log")
		if errors.Is(err, ErrSourceLocked) {
			break
		}
		if err == nil {
			rel()
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 s after the restart a second lock still gets %v, want ErrSourceLocked", err)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	release()
	rel, err := b.LockSource(ctx, "mx-a", "file:/var/log/mail.log")
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	rel()
}
