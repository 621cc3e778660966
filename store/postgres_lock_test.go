package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/pgtest"
)

// TestLockSourceSurvivesRestart: a follower's lock on PostgreSQL is taken
// again after the server restarts, so a second follower is still refused;
// after release it can be taken at once.
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
	retaken := make(chan int64, 1)
	hook := func(key int64) {
		select {
		case retaken <- key:
		default:
		}
	}
	lockRetaken.Store(&hook)
	t.Cleanup(func() { lockRetaken.Store(nil) })
	const host, source = "mx-a", "file:/var/log/mail.log"
	release, err := a.LockSource(ctx, host, source)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.LockSource(ctx, host, source); !errors.Is(err, ErrSourceLocked) {
		t.Fatalf("second lock before the restart: %v, want ErrSourceLocked", err)
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for a's keeper to hold the lock on a new session, rather than
	// probing with b's own attempts, which would race with it.
	sum := sha256.Sum256([]byte(host + "\x00" + source))
	want := int64(binary.BigEndian.Uint64(sum[:8]))
	select {
	case key := <-retaken:
		if key != want {
			t.Fatalf("lock %d taken again, want %d", key, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the lock was not taken again within 30 s of the restart")
	}
	if _, err := b.LockSource(ctx, host, source); !errors.Is(err, ErrSourceLocked) {
		t.Fatalf("second lock after the restart: %v, want ErrSourceLocked", err)
	}
	// Release unlocks before it returns: the lock is free at once.
	release()
	rel, err := b.LockSource(ctx, host, source)
	if err != nil {
		t.Fatalf("lock right after release: %v", err)
	}
	rel()
	rel, err = a.LockSource(ctx, host, source)
	if err != nil {
		t.Fatalf("lock right after the second release: %v", err)
	}
	rel()
}
