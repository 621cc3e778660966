package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// TestPostgresPruneAlone: two hosts pruning one PostgreSQL database at
// once do not both delete: the second is refused at once with
// ErrPruneRunning, deletes nothing, and once the first has finished a
// prune runs again.
func TestPostgresPruneAlone(t *testing.T) {
	ctx := context.Background()
	a, dsn := openPG(t)
	b, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.now = a.now
	var ds []delivery.Delivery
	for i := range 96 {
		ds = append(ds, testDelivery(i, t0.Add(-4*24*time.Hour+time.Duration(i)*time.Hour), "example.com"))
	}
	if _, err := a.AddDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		t.Helper()
		return len(allDeliveries(t, a, Filter{}))
	}

	// a's Prune waits, holding the lock, while b's runs.
	held, resume := make(chan struct{}), make(chan struct{})
	defer func(f func()) { pruneLocked = f }(pruneLocked)
	pruneLocked = func() {
		pruneLocked = func() {} // only a's
		close(held)
		<-resume
	}
	type result struct {
		res PruneResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := a.Prune(ctx, t0.Add(-2*24*time.Hour))
		done <- result{res, err}
	}()
	<-held
	res, err := b.Prune(ctx, t0.Add(-time.Hour))
	if !errors.Is(err, ErrPruneRunning) || res.Deleted != 0 {
		t.Errorf("second Prune while one runs: %+v, %v; want an error wrapping ErrPruneRunning", res, err)
	}
	if err != nil && !strings.Contains(err.Error(), "another prune is running") {
		t.Errorf("second Prune: error %q does not say why", err)
	}
	if n := count(); n != len(ds) {
		t.Errorf("after the refused Prune: %d deliveries, want %d", n, len(ds))
	}
	close(resume)
	r := <-done
	if r.err != nil || r.res.Deleted != 36 {
		t.Fatalf("first Prune: %+v, %v; want 36 deleted", r.res, r.err)
	}
	// The lock went with the first Prune.
	if res, err := b.Prune(ctx, t0.Add(-time.Hour)); err != nil || res.Deleted != 48 {
		t.Errorf("Prune after the first finished: %+v, %v; want 48 deleted", res, err)
	}
	if n := count(); n != len(ds)-48-36 {
		t.Errorf("%d deliveries left, want %d", n, len(ds)-48-36)
	}
}
