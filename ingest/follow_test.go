package ingest

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/store"
)

// fakeStore keeps checkpoints and committed deliveries in memory; commits
// fail with commitErr while it is set.
type fakeStore struct {
	mu          sync.Mutex
	checkpoints map[string][]byte
	stored      []delivery.Delivery
	commitErr   error
	lockErr     error
	locked      []string // host and source of each lock
	pruned      chan time.Time
}

func newFakeStore() *fakeStore { return &fakeStore{checkpoints: map[string][]byte{}} }

func (s *fakeStore) CommitBatchEach(_ context.Context, source string, ds []delivery.Delivery, cp []byte, added func(*delivery.Delivery)) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.commitErr != nil {
		return 0, s.commitErr
	}
	for i := range ds {
		s.stored = append(s.stored, ds[i])
		if added != nil {
			added(&ds[i])
		}
	}
	s.checkpoints[source] = cp
	return len(ds), nil
}

func (s *fakeStore) Checkpoint(_ context.Context, source string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkpoints[source], nil
}

func (s *fakeStore) SetHost(context.Context, string) error { return nil }

func (s *fakeStore) LockSource(_ context.Context, host, source string) (func(), error) {
	if s.lockErr != nil {
		return nil, s.lockErr
	}
	s.locked = append(s.locked, host, source)
	return func() {}, nil
}

func (s *fakeStore) Prune(_ context.Context, before time.Time) (store.PruneResult, error) {
	if s.pruned != nil {
		s.pruned <- before
	}
	return store.PruneResult{}, nil
}

func (s *fakeStore) Horizon(context.Context) (time.Time, error) { return time.Time{}, nil }

// scripted is a Source whose runs are the functions of runs, in turn; a
// run past the last cancels the follower's context.
type scripted struct {
	runs    []func(ctx context.Context, from logparse.Checkpoint, commit logparse.Commit) error
	calls   int
	from    []logparse.Checkpoint
	cancel  context.CancelFunc
	reopens int
}

func (s *scripted) Run(ctx context.Context, from logparse.Checkpoint, commit logparse.Commit) error {
	s.from = append(s.from, from)
	if s.calls == len(s.runs) {
		s.cancel()
		return ctx.Err()
	}
	s.calls++
	return s.runs[s.calls-1](ctx, from, commit)
}

func (s *scripted) Reopen() { s.reopens++ }

func failWith(err error) func(context.Context, logparse.Checkpoint, logparse.Commit) error {
	return func(context.Context, logparse.Checkpoint, logparse.Commit) error { return err }
}

// commitOne commits a batch of one delivery at offset off.
func commitOne(off int64, relay string) func(context.Context, logparse.Checkpoint, logparse.Commit) error {
	return func(ctx context.Context, _ logparse.Checkpoint, commit logparse.Commit) error {
		d := delivery.Delivery{QueueID: "1A2B3C4D5E", Relay: relay}
		return commit(ctx, logparse.Batch{Deliveries: []delivery.Delivery{d}, Checkpoint: logparse.Checkpoint{Path: "/var/log/mail.log", Offset: off}})
	}
}

// newTestFollower follows src into st; its waits return at once and are
// recorded in waits.
func newTestFollower(st FollowStore, src *scripted, log *bytes.Buffer, keep time.Duration) (f *Follower, ctx context.Context, waits *[]time.Duration) {
	ctx, src.cancel = context.WithCancel(context.Background())
	f = NewFollower(st, FollowOptions{Source: src, SourceName: "file:/var/log/mail.log", Keep: keep,
		Logger: slog.New(slog.NewTextHandler(log, nil))})
	waits = new([]time.Duration)
	f.after = func(d time.Duration) <-chan time.Time {
		*waits = append(*waits, d)
		ch := make(chan time.Time, 1)
		ch <- time.Time{}
		return ch
	}
	return f, ctx, waits
}

// TestFollowerBackoff: after storage errors the follower retries at 1, 2,
// 4, 8, 10, 10 s, is failing meanwhile, and stopped while failing says so.
func TestFollowerBackoff(t *testing.T) {
	away := errors.New("connection refused")
	src := &scripted{}
	for range 6 {
		src.runs = append(src.runs, failWith(away))
	}
	var log bytes.Buffer
	f, ctx, _ := newTestFollower(newFakeStore(), src, &log, 0)
	// Stopped during the sixth wait, while failing.
	var waits []time.Duration
	var failing []error
	f.after = func(d time.Duration) <-chan time.Time {
		waits = append(waits, d)
		failing = append(failing, f.Failing())
		if len(waits) == 6 {
			src.cancel()
			return nil
		}
		ch := make(chan time.Time, 1)
		ch <- time.Time{}
		return ch
	}
	err := f.Run(ctx)
	want := []time.Duration{1, 2, 4, 8, 10, 10}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(waits, want) || src.calls != 6 {
		t.Errorf("%d runs, waits %v, want 6 and %v", src.calls, waits, want)
	}
	for i, e := range failing {
		if e == nil || e.Error() != "connection refused" {
			t.Errorf("Failing during wait %d: %v", i+1, e)
		}
	}
	if err == nil || err.Error() != "follower stopped while failing (nothing committed since; the next start resumes from the last checkpoint): connection refused" {
		t.Errorf("Run: %v", err)
	}
	if n := strings.Count(log.String(), "follower stopped; restarting from the last checkpoint"); n != 6 {
		t.Errorf("%d restarts logged, want 6:\n%s", n, log.String())
	}
}

// TestFollowerBackoffResets: a run that committed starts the backoff
// again, each run resumes from the last committed checkpoint, and a run
// that ends without an error ends the follower.
func TestFollowerBackoffResets(t *testing.T) {
	st := newFakeStore()
	away := errors.New("database is locked")
	src := &scripted{}
	src.runs = append(src.runs, failWith(away), failWith(away), func(ctx context.Context, from logparse.Checkpoint, commit logparse.Commit) error {
		if err := commitOne(100, "mx.a.example[192.0.2.10]:25")(ctx, from, commit); err != nil {
			return err
		}
		return away
	}, failWith(away), commitOne(200, "mx.a.example[192.0.2.10]:25"))
	f, ctx, waits := newTestFollower(st, src, new(bytes.Buffer), 0)
	if err := f.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if want := []time.Duration{time.Second, 2 * time.Second, time.Second, 2 * time.Second}; !slices.Equal(*waits, want) {
		t.Errorf("waits %v, want %v", *waits, want)
	}
	if f.Failing() != nil {
		t.Errorf("failing after a commit: %v", f.Failing())
	}
	var offs []int64
	for _, cp := range src.from {
		offs = append(offs, cp.Offset)
	}
	if want := []int64{0, 0, 0, 100, 100}; !slices.Equal(offs, want) {
		t.Errorf("runs started from offsets %v, want %v", offs, want)
	}
}

// TestFollowerFailing: while it waits after a failed commit, Failing says
// why; it is nil again once a run reads the checkpoint (the store
// answers), and stays so after a commit.
func TestFollowerFailing(t *testing.T) {
	st := newFakeStore()
	st.commitErr = errors.New("database or disk is full")
	src := &scripted{}
	var f *Follower
	var inRun error
	src.runs = append(src.runs, commitOne(1, ""), func(ctx context.Context, from logparse.Checkpoint, commit logparse.Commit) error {
		inRun = f.Failing()
		st.commitErr = nil
		return commitOne(2, "")(ctx, from, commit)
	})
	f, ctx, _ := newTestFollower(st, src, new(bytes.Buffer), 0)
	var waiting error
	after := f.after
	f.after = func(d time.Duration) <-chan time.Time {
		waiting = f.Failing()
		return after(d)
	}
	if err := f.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if waiting == nil || waiting.Error() != "database or disk is full" {
		t.Errorf("Failing while waiting to retry: %v", waiting)
	}
	if inRun != nil {
		t.Errorf("Failing in the next run: %v", inRun)
	}
	if err := f.Failing(); err != nil || len(st.stored) != 1 {
		t.Errorf("after the store recovered: failing %v, %d stored", err, len(st.stored))
	}
}

// TestFollowerCommit: deliveries are marked with the relays rule before
// they are stored with the checkpoint, and a batch of many deliveries
// without TLS lines logs the TLS logging hint once.
func TestFollowerCommit(t *testing.T) {
	st := newFakeStore()
	noTLS := func(ctx context.Context, _ logparse.Checkpoint, commit logparse.Commit) error {
		b := logparse.Batch{Deliveries: []delivery.Delivery{{Relay: "127.0.0.1[127.0.0.1]:10024"}, {Relay: "mx.b.example[192.0.2.11]:25"}},
			Stats: logparse.Stats{Deliveries: 20}}
		return commit(ctx, b)
	}
	src := &scripted{runs: []func(context.Context, logparse.Checkpoint, logparse.Commit) error{
		func(ctx context.Context, from logparse.Checkpoint, commit logparse.Commit) error {
			if err := noTLS(ctx, from, commit); err != nil {
				return err
			}
			return noTLS(ctx, from, commit)
		},
	}}
	var log bytes.Buffer
	f, ctx, _ := newTestFollower(st, src, &log, 0)
	if err := f.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if len(st.stored) != 4 || !st.stored[0].Internal || st.stored[1].Internal {
		t.Errorf("stored %+v", st.stored)
	}
	if n := strings.Count(log.String(), "smtp_tls_loglevel=1"); n != 1 {
		t.Errorf("TLS logging hint logged %d times, want once:\n%s", n, log.String())
	}
}

// TestFollowerBadCheckpoint: an unreadable checkpoint is an error of the
// run, naming the source, not a fresh start.
func TestFollowerBadCheckpoint(t *testing.T) {
	st := newFakeStore()
	st.checkpoints["file:/var/log/mail.log"] = []byte("{not json")
	src := &scripted{}
	f, ctx, _ := newTestFollower(st, src, new(bytes.Buffer), 0)
	err := f.runOnce(ctx)
	if err == nil || !strings.HasPrefix(err.Error(), "checkpoint of file:/var/log/mail.log is unreadable: ") || len(src.from) != 0 {
		t.Errorf("runOnce: %v, %d runs", err, len(src.from))
	}
}

// TestFollowerLock: the lock is of the host and the source, and a refusal
// says the follower was refused.
func TestFollowerLock(t *testing.T) {
	st := newFakeStore()
	f, _, _ := newTestFollower(st, &scripted{}, new(bytes.Buffer), 0)
	if _, err := f.Lock(context.Background(), "mx1"); err != nil || f.Host() != "mx1" || !slices.Equal(st.locked, []string{"mx1", "file:/var/log/mail.log"}) {
		t.Errorf("Lock: %v, host %q, locked %q", err, f.Host(), st.locked)
	}
	st.lockErr = store.ErrSourceLocked
	if _, err := f.Lock(context.Background(), "mx1"); !errors.Is(err, store.ErrSourceLocked) || !strings.HasPrefix(err.Error(), "follower refused: ") {
		t.Errorf("Lock when held: %v", err)
	}
}

func TestFollowerReopen(t *testing.T) {
	src := &scripted{}
	f, _, _ := newTestFollower(newFakeStore(), src, new(bytes.Buffer), 0)
	f.Reopen()
	if src.reopens != 1 {
		t.Errorf("%d reopens, want 1", src.reopens)
	}
	// A source that cannot reopen (journald) is left alone.
	NewFollower(newFakeStore(), FollowOptions{Source: &logparse.JournalFollower{}}).Reopen()
}

// TestFollowerKeep: with Keep, the follower prunes what is older on start.
func TestFollowerKeep(t *testing.T) {
	st := newFakeStore()
	st.pruned = make(chan time.Time, 1)
	var before time.Time
	src := &scripted{runs: []func(context.Context, logparse.Checkpoint, logparse.Commit) error{
		func(context.Context, logparse.Checkpoint, logparse.Commit) error {
			before = <-st.pruned
			return nil
		},
	}}
	start := time.Now()
	f, ctx, _ := newTestFollower(st, src, new(bytes.Buffer), 48*time.Hour)
	if err := f.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if lo, hi := start.Add(-48*time.Hour), time.Now().Add(-48*time.Hour); before.Before(lo) || before.After(hi) {
		t.Errorf("pruned before %v, want between %v and %v", before, lo, hi)
	}
}
