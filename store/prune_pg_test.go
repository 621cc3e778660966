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
	a, b := openPGHosts(t)
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

// TestPostgresPruneWaitsForWriters: a transaction that stores deliveries
// reads the pruning horizon once; a Prune that would move it waits until
// that transaction has ended (pgHorizonLock), and the transactions after
// it leave out the deliveries before the new horizon. No delivery before a
// horizon is left stored once the Prune has finished.
func TestPostgresPruneWaitsForWriters(t *testing.T) {
	withCopy(t)
	ctx := context.Background()
	a, b := openPGHosts(t)
	batch := func(from time.Time, n, seq int) *Batch {
		var ds []delivery.Delivery
		for i := range n {
			ds = append(ds, testDelivery(seq+i, from.Add(time.Duration(i)*time.Minute), "example.com"))
		}
		return mustBatch(t, ds)
	}
	old := t0.Add(-4 * 24 * time.Hour)
	bk := a.Bulk()
	if n, err := bk.Add(ctx, batch(t0.Add(-time.Hour), 10, 0)); err != nil || n != 10 {
		t.Fatalf("recent rows: %d, %v", n, err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.Prune(ctx, t0.Add(-2*24*time.Hour))
		done <- err
	}()
	// The Prune waits for the open transaction's shared lock.
	r, _ := a.reader()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		if err := r.QueryRowContext(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = $1`, int64(pgHorizonLock)).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Prune finished (%v) while a transaction that read the horizon was open", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the Prune never waited for the horizon lock")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not a synchronisation by time
	}
	// The open transaction goes on with the horizon it read.
	if n, err := bk.Add(ctx, batch(old, 10, 100)); err != nil || n != 10 {
		t.Fatalf("old rows in the open transaction: %d, %v; want 10 (its horizon is the one before the Prune)", n, err)
	}
	if err := bk.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Prune after the transaction ended: %v", err)
	}
	// The next transaction reads the new horizon.
	if n, err := bk.Add(ctx, batch(old.Add(time.Hour), 10, 200)); err != nil || n != 0 || bk.Old() != 10 {
		t.Fatalf("old rows after the Prune: added %d (%v), %d left out; want 0 and 10", n, err, bk.Old())
	}
	if err := bk.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bk.Close(); err != nil {
		t.Fatal(err)
	}
	var below int
	if err := r.QueryRowContext(ctx, `SELECT count(*) FROM deliveries WHERE time < $1`, t0.Add(-2*24*time.Hour).Truncate(24*time.Hour).UnixMicro()).Scan(&below); err != nil {
		t.Fatal(err)
	}
	if below != 0 {
		t.Errorf("%d deliveries before the horizon are stored after the Prune", below)
	}
}

// openPGHosts opens one new PostgreSQL database twice, as two hosts would,
// with the same clock.
func openPGHosts(t *testing.T) (a, b *Store) {
	t.Helper()
	a, dsn := openPG(t)
	b, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	b.now = a.now
	return a, b
}
