package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/report"
	"github.com/mailtls/mailtls/store"
	"github.com/mailtls/mailtls/store/storetest"
)

// The SQLite store is a backend of the seam.
var (
	_ storetest.Backend = (*store.Store)(nil)
	_ report.Source     = (*store.Store)(nil)
)

func openSQLite(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "mailtls.db"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestConformanceSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend { return openSQLite(t) })
}

func openPostgres(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestConformancePostgres(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend { return openPostgres(t) })
}

// recorder is a storetest.T that records failures instead of failing the
// test, so that a test can require the suite to fail.
type recorder struct{ errs []string }

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// Fatalf records and ends the case, as testing.T's does (runCase runs each
// case on a goroutine of its own).
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

// runCases runs the cases of the suite named in only (every case when only
// is nil) on a backend from open and returns each case's recorded failures.
func runCases(open func() storetest.Backend, only []string) map[string][]string {
	out := map[string][]string{}
	for _, c := range storetest.Cases() {
		if only != nil && !slices.Contains(only, c.Name) {
			continue
		}
		r := &recorder{}
		done := make(chan struct{})
		go func() {
			defer close(done)
			b := open()
			defer b.Close()
			c.Run(r, b)
		}()
		<-done
		out[c.Name] = r.errs
	}
	return out
}

// noCheckpoint stores the deliveries of a batch but not its checkpoint.
type noCheckpoint struct{ *store.Store }

func (b noCheckpoint) CommitBatch(ctx context.Context, source string, ds []delivery.Delivery, ck []byte) (int, error) {
	return b.AddDeliveries(ctx, ds)
}

// noGeneration never reports a change to the overrides.
type noGeneration struct{ *store.Store }

func (noGeneration) OverridesVersion(context.Context) (uint64, error) { return 1, nil }

// doubleCount counts a re-committed batch again: it reports, and adds to
// the totals, the deliveries of every batch whatever was stored before,
// by giving each commit's deliveries fresh keys.
type doubleCount struct {
	*store.Store
	n *int
}

func (b doubleCount) CommitBatch(ctx context.Context, source string, ds []delivery.Delivery, ck []byte) (int, error) {
	ds = append([]delivery.Delivery(nil), ds...)
	for i := range ds {
		*b.n++
		ds[i].Key = fmt.Sprintf("%064x", *b.n)
	}
	return b.Store.CommitBatch(ctx, source, ds, ck)
}

// wholeDays answers reports from the daily rollup alone: the partial
// first and last day of a window count whole.
type wholeDays struct{ *store.Store }

func (b wholeDays) Summary(ctx context.Context, w store.Window) (store.Summary, error) {
	w.Since = w.Since.Truncate(24 * time.Hour)
	if !w.Until.IsZero() && !w.Until.Equal(w.Until.Truncate(24*time.Hour)) {
		w.Until = w.Until.Truncate(24 * time.Hour).Add(24 * time.Hour)
	}
	return b.Store.Summary(ctx, w)
}

// treeAsSubs reads "*.example.com" as ".example.com", leaving out the
// domain itself.
type treeAsSubs struct{ *store.Store }

func (b treeAsSubs) Summary(ctx context.Context, w store.Window) (store.Summary, error) {
	w.Domain = strings.TrimPrefix(w.Domain, "*")
	return b.Store.Summary(ctx, w)
}

// rawOnly answers reports from the raw rows alone, as if pruning had
// deleted the rollups with them.
type rawOnly struct{ *store.Store }

func (b rawOnly) Summary(ctx context.Context, w store.Window) (store.Summary, error) {
	if h, err := b.Horizon(ctx); err == nil && w.Since.Before(h) {
		w.Since = h
	}
	return b.Store.Summary(ctx, w)
}

// anonymous records no actor in the history.
type anonymous struct{ *store.Store }

func (b anonymous) SetOverride(ctx context.Context, o store.Override, actor string) error {
	return b.Store.SetOverride(ctx, o, "")
}

// TestConformanceCatchesBrokenStores runs the suite against broken
// wrappers of the SQLite store and requires it to fail each in the cases
// that cover the broken behaviour, and to pass the faithful wrapper.
// oneHost writes every host's deliveries and checkpoints as one host's.
type oneHost struct{ *store.Store }

func (oneHost) SetHost(context.Context, string) error { return nil }

// asciiOnly avoids what PostgreSQL would refuse by leaving out the
// deliveries whose text is not plain ASCII.
type asciiOnly struct{ *store.Store }

func (b asciiOnly) CommitBatch(ctx context.Context, source string, ds []delivery.Delivery, ck []byte) (int, error) {
	var kept []delivery.Delivery
	for _, d := range ds {
		if !strings.ContainsFunc(d.Domain+d.Relay+d.Reason+d.Recipient+d.QueueID, func(r rune) bool { return r == 0 || r >= 0x80 }) {
			kept = append(kept, d)
		}
	}
	n, err := b.Store.CommitBatch(ctx, source, kept, ck)
	return n + len(ds) - len(kept), err // and says it stored them
}

// noLock lets any number of followers run.
type noLock struct{ *store.Store }

func (noLock) LockSource(context.Context, string, string) (func(), error) { return func() {}, nil }

func TestConformanceCatchesBrokenStores(t *testing.T) {
	type faithful struct{ *store.Store }
	mutants := []struct {
		name string
		wrap func(*store.Store) storetest.Backend
		must []string // cases that must fail
	}{
		{"faithful", func(s *store.Store) storetest.Backend { return faithful{s} }, nil},
		{"drops the checkpoint", func(s *store.Store) storetest.Backend { return noCheckpoint{s} },
			[]string{"CommitExactlyOnce", "FailedCommitStoresNothing"}},
		{"never bumps the version", func(s *store.Store) storetest.Backend { return noGeneration{s} },
			[]string{"ChangeNotification"}},
		{"double-counts a re-committed batch", func(s *store.Store) storetest.Backend { return doubleCount{s, new(int)} },
			[]string{"CommitExactlyOnce", "PruneKeepsRollups"}},
		{"counts partial days whole", func(s *store.Store) storetest.Backend { return wholeDays{s} },
			[]string{"WindowsAndRollups"}},
		{"reads *.x as .x", func(s *store.Store) storetest.Backend { return treeAsSubs{s} },
			[]string{"WindowsAndRollups"}},
		{"loses the rollups when pruning", func(s *store.Store) storetest.Backend { return rawOnly{s} },
			[]string{"PruneKeepsRollups"}},
		{"records no actor", func(s *store.Store) storetest.Backend { return anonymous{s} },
			[]string{"OverrideHistory"}},
		{"ignores the host", func(s *store.Store) storetest.Backend { return oneHost{s} },
			[]string{"ExactlyOncePerHost"}},
		{"takes no follower lock", func(s *store.Store) storetest.Backend { return noLock{s} },
			[]string{"OneFollowerPerHostAndSource"}},
		{"drops deliveries with hostile text", func(s *store.Store) storetest.Backend { return asciiOnly{s} },
			[]string{"HostileText"}},
	}
	for _, m := range mutants {
		t.Run(m.name, func(t *testing.T) {
			// A mutant runs only the cases that must catch it.
			got := runCases(func() storetest.Backend { return m.wrap(openSQLite(t)) }, m.must)
			for name, errs := range got {
				if m.must == nil && len(errs) > 0 {
					t.Errorf("case %s fails a faithful wrapper: %v", name, errs)
				}
			}
			if m.must == nil && len(got) != len(storetest.Cases()) {
				t.Errorf("ran %d cases of %d", len(got), len(storetest.Cases()))
			}
			for _, name := range m.must {
				if len(got[name]) == 0 {
					t.Errorf("case %s passed a store that %s", name, m.name)
				} else {
					t.Logf("case %s caught it: %s", name, got[name][0])
				}
			}
		})
	}
}
