package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/metrics"
)

// FollowOptions are the settings of a Follower.
type FollowOptions struct {
	// Source is the log followed (see FileSource and JournalSource).
	Source Source
	// SourceName names the source's checkpoint and lock in the store:
	// "file:" and the absolute path, "journal", or "journal:" and the
	// journal directory.
	SourceName string
	// Keep, if positive, deletes the deliveries older than it when the
	// follower starts and then daily (--keep).
	Keep time.Duration
	// Relays marks the deliveries to internal hops; nil applies only the
	// built-in rule (loopback addresses and unix sockets).
	Relays *logparse.InternalRelays
	// Logger receives the follower's failures and warnings.
	Logger *slog.Logger
}

// A Follower follows a Source and commits every batch with its checkpoint
// to a FollowStore, retrying after storage errors (see Run).
type Follower struct {
	// Metrics, if not nil, counts what the follower commits. Set it before
	// Run.
	Metrics *metrics.Metrics

	opts    FollowOptions
	st      FollowStore
	host    string                               // the fleet host it writes as, set by Lock
	warned  bool                                 // the smtp_tls_loglevel hint was logged
	failing atomic.Pointer[string]               // why the last run failed, until the next one starts
	commits atomic.Int64                         // batches committed, to reset the backoff
	after   func(time.Duration) <-chan time.Time // time.After; a test seam
}

// NewFollower returns a follower of opts.Source that writes to st.
func NewFollower(st FollowStore, opts FollowOptions) *Follower {
	opts.Relays = orBuiltIn(opts.Relays)
	return &Follower{opts: opts, st: st, after: time.After}
}

// FileSource follows the mail log file at path (absolute; it need not
// exist yet), checking it for new lines every poll.
func FileSource(path string, poll time.Duration, log *slog.Logger) (src Source, name string) {
	// At most one commit per second at the end of the file: each commit
	// writes every database page it touches (about 20, of 32 KiB, for a
	// few deliveries), and a busy log reaches its end at every poll.
	return &logparse.Follower{Path: path, Poll: poll, BatchEvery: 500 * time.Millisecond, SettleFor: time.Second,
		Logger: log, NewCorrelator: newCorrelator}, "file:" + path
}

// JournalSource follows journald through the program journalctl: the
// system journal, or the journal files in dir (absolute) if it is not "".
func JournalSource(journalctl, dir string, trust logparse.JournalTrust, log *slog.Logger) (src Source, name string) {
	name = "journal"
	if dir != "" {
		// Another directory is another journal, with cursors of its
		// own: keep its checkpoint apart from the system journal's.
		name = "journal:" + dir
	}
	// One commit a second at most, as the file follower's SettleFor:
	// each commit rewrites whole pages (32 KiB) whatever it adds.
	return &logparse.JournalFollower{Journalctl: journalctl, Directory: dir, Trust: trust,
		BatchEvery: time.Second, Logger: log, NewCorrelator: newCorrelator}, name
}

func newCorrelator() *logparse.Correlator {
	return logparse.NewCorrelator(logparse.Options{RefTime: time.Now()})
}

// Host is the fleet host the follower writes as, once locked.
func (f *Follower) Host() string { return f.host }

// SourceName is the name of the source's checkpoint (FollowOptions).
func (f *Follower) SourceName() string { return f.opts.SourceName }

// Lock takes the lock of host and the follower's source, so that a second
// follower of the same log under the same host name is refused; release
// gives it back. The store must write as host already (HostSetter).
func (f *Follower) Lock(ctx context.Context, host string) (release func(), err error) {
	f.host = host
	if release, err = f.st.LockSource(ctx, host, f.opts.SourceName); err != nil {
		return nil, fmt.Errorf("follower refused: %w", err)
	}
	return release, nil
}

// Reopen makes the follower re-check and reopen its source (SIGHUP), if
// the source can.
func (f *Follower) Reopen() {
	if r, ok := f.opts.Source.(interface{ Reopen() }); ok {
		r.Reopen()
	}
}

// Failing returns why the follower's last attempt failed while it waits to
// retry, or nil when it is not failing.
func (f *Follower) Failing() error {
	if msg := f.failing.Load(); msg != nil {
		return errors.New(*msg)
	}
	return nil
}

// followRetryFirst and followRetryMost bound the follower's backoff
// after a storage error: a database that is away (PostgreSQL restarting,
// the network cut) is retried at 1, 2, 4, 8, 10, 10, ... s, so that the
// follower catches up at most 10 s after it returns.
const (
	followRetryFirst = time.Second
	followRetryMost  = 10 * time.Second
)

// Run follows until ctx is done, retrying after storage errors: a database
// that is briefly locked, full or away must not end the follower. The log
// is the buffer: the follower commits nothing while the store fails, keeps
// its position in the store's checkpoint, and resumes from it, so nothing
// is lost or counted twice. The backoff starts again after a run that
// committed. Stopped (ctx done) while the store was failing, Run returns
// an error saying so, which makes the exit code of run and follow 1.
func (f *Follower) Run(ctx context.Context) error {
	if f.opts.Keep > 0 {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			retain(rctx, f.st, f.opts.Keep, f.opts.Logger)
		}()
		defer func() { cancel(); <-done }()
	}
	backoff := followRetryFirst
	for {
		before := f.commits.Load()
		err := f.runOnce(ctx)
		if ctx.Err() != nil {
			return f.stoppedFailing()
		}
		if err == nil {
			return nil
		}
		if f.commits.Load() != before {
			backoff = followRetryFirst
		}
		msg := err.Error()
		f.failing.Store(&msg)
		f.opts.Logger.Error("follower stopped; restarting from the last checkpoint", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return f.stoppedFailing()
		case <-f.after(backoff):
		}
		backoff = min(2*backoff, followRetryMost)
	}
}

// stoppedFailing is the error of a follower stopped while its last attempt
// had failed, or nil.
func (f *Follower) stoppedFailing() error {
	if msg := f.failing.Load(); msg != nil {
		return fmt.Errorf("follower stopped while failing (nothing committed since; the next start resumes from the last checkpoint): %s", *msg)
	}
	return nil
}

// runOnce runs the source once, from the stored checkpoint.
func (f *Follower) runOnce(ctx context.Context) error {
	cp, err := f.checkpoint(ctx)
	if err != nil {
		return err
	}
	f.failing.Store(nil) // the store answers again; a failed commit sets it anew
	var added func(*delivery.Delivery)
	if m := f.Metrics; m != nil {
		m.Follower.Restored(cp, restoredStats(cp))
		added = m.Deliveries.Add
	}
	err = f.opts.Source.Run(ctx, cp, func(ctx context.Context, b logparse.Batch) error {
		return f.commit(ctx, b, added)
	})
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// checkpoint reads the source's checkpoint (zero when there is none).
func (f *Follower) checkpoint(ctx context.Context) (logparse.Checkpoint, error) {
	raw, err := f.st.Checkpoint(ctx, f.opts.SourceName)
	if err != nil {
		return logparse.Checkpoint{}, fmt.Errorf("read checkpoint: %w", err)
	}
	var cp logparse.Checkpoint
	if raw != nil {
		if cp, err = logparse.UnmarshalCheckpoint(raw); err != nil {
			return logparse.Checkpoint{}, fmt.Errorf("checkpoint of %s is unreadable: %w", f.opts.SourceName, err)
		}
	}
	return cp, nil
}

// commit stores a batch with its checkpoint; added sees each delivery
// stored (nil: none).
func (f *Follower) commit(ctx context.Context, b logparse.Batch, added func(*delivery.Delivery)) error {
	f.opts.Relays.Mark(b.Deliveries)
	_, err := f.st.CommitBatchEach(ctx, f.opts.SourceName, b.Deliveries, b.Checkpoint.Marshal(), added)
	if err != nil {
		return err
	}
	f.failing.Store(nil)
	f.commits.Add(1)
	if f.Metrics != nil {
		f.Metrics.Follower.Committed(b, time.Now())
	}
	if !f.warned && b.Stats.Deliveries >= 20 && b.Stats.TLSLines == 0 {
		f.warned = true
		f.opts.Logger.Warn(TLSLoggingHint)
	}
	return nil
}

// restoredStats are the correlator counters saved in a checkpoint (zero
// when it has none or they cannot be read: the follower then fails on it
// anyway).
func restoredStats(cp logparse.Checkpoint) logparse.Stats {
	c := logparse.NewCorrelator(logparse.Options{})
	if len(cp.State) > 0 && c.UnmarshalState(cp.State) != nil {
		return logparse.Stats{}
	}
	return c.Stats()
}

// retain deletes deliveries older than keep now and then once a day, until
// ctx is done. A failure is logged and retried an hour later.
func retain(ctx context.Context, st Pruner, keep time.Duration, log *slog.Logger) {
	for {
		next := 24 * time.Hour
		res, err := st.Prune(ctx, time.Now().Add(-keep))
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Error("deleting old deliveries (--keep) failed; retrying in an hour", "err", err)
			next = time.Hour
		case res.Deleted > 0:
			log.Info("deleted old deliveries (--keep)", "deleted", res.Deleted, "before", res.Horizon.Format(time.DateOnly))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}
