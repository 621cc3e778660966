package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/metrics"
)

func followFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log", Value: "/var/log/mail.log", Usage: "mail log `PATH` to follow (it may not exist yet)"},
		&cli.BoolFlag{Name: "journal", Usage: "follow journald through journalctl instead of a file"},
		&cli.StringFlag{Name: "journal-dir", Usage: "follow the journal files in `DIR` (journalctl --directory), e.g. a bind-mounted /var/log/journal; implies --journal"},
		&cli.StringFlag{Name: "journalctl", Value: "journalctl", Usage: "journalctl `PROGRAM` to run with --journal"},
		&cli.StringSliceFlag{Name: "journal-unit", Usage: "with --journal: read only the entries of systemd `UNIT` (journalctl --unit; repeatable, globs allowed, e.g. postfix@-.service), and believe Postfix smtp/lmtp entries only from it"},
		postfixUserFlag(),
		hostFlag(),
		&cli.DurationFlag{Name: "poll", Value: 250 * time.Millisecond, Usage: "how often to check the log for new lines"},
		&cli.StringFlag{Name: "keep", Usage: "delete deliveries older than `AGE` (e.g. 400d) at start and then daily; reports keep their daily totals (default: keep all)"},
		internalRelaysFlag(),
		metricsDomainsFlag(),
	}
}

func followCommand(e env) *cli.Command {
	flags := append(followFlags(),
		httpFlag(""),
		&cli.BoolFlag{Name: "allow-remote", Usage: "allow --http on a non-loopback address"},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "log `LEVEL`: debug, info, warn, error"},
		&cli.StringFlag{Name: "config", Usage: "config `FILE` with flag=value lines (default /etc/mailtls/mailtls.conf when present)"},
	)
	return &cli.Command{
		Name:  "follow",
		Usage: "follow the live mail log and record every delivery (crash-safe)",
		UsageText: "mailtls follow --log /var/log/mail.log\n" +
			"mailtls follow --journal          # Debian 12 and other journald-only systems\n" +
			"mailtls follow --journal-dir /host/var/log/journal   # a journal bind-mounted into a container\n\n" +
			"Survives rotation by rename and copytruncate, and resumes exactly where it\n" +
			"stopped after a crash: rows and position are committed together. Rotations\n" +
			"made while it was stopped are caught up on start (gzip-compressed files too).",
		Flags: flags,
		Action: func(c *cli.Context) error {
			if err := loadConfig(c); err != nil {
				return err
			}
			log, err := newLogger(c, e)
			if err != nil {
				return err
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			f, err := newFollower(c, st, log)
			if err != nil {
				return err
			}
			release, err := f.lock(c)
			if err != nil {
				return err
			}
			defer release()
			w, err := startWeb(c, st, log, nil, f)
			if err != nil {
				return err
			}
			defer w.stop()
			log.Info("mailtls follow started", "host", f.host, "source", f.source, "db", dbName(c), "http", w.addr())
			return f.run(c.Context)
		},
	}
}

// follower wraps a file or journald follower with checkpoint storage.
type follower struct {
	host   string // the fleet host it writes as (--host)
	source string
	st     followStore
	log    *slog.Logger
	file   *logparse.Follower
	jrnl   *logparse.JournalFollower
	warned bool          // the smtp_tls_loglevel hint was logged
	keep   time.Duration // --keep: delete deliveries older than this (0: keep all)
	relays *logparse.InternalRelays

	metrics *metrics.Metrics       // nil without --http; set before run
	failing atomic.Pointer[string] // why the last run failed, until the next one starts
	commits atomic.Int64           // batches committed, to reset the backoff
}

func newFollower(c *cli.Context, st followStore, log *slog.Logger) (*follower, error) {
	f := &follower{st: st, log: log}
	var err error
	if f.relays, err = internalRelays(c); err != nil {
		return nil, err
	}
	if k := c.String("keep"); k != "" {
		var err error
		if f.keep, err = parseRetention(k, "--keep"); err != nil {
			return nil, err
		}
	}
	newCorr := func() *logparse.Correlator {
		return logparse.NewCorrelator(logparse.Options{RefTime: time.Now()})
	}
	if c.Bool("journal") || c.IsSet("journal-dir") {
		trust, err := journalTrust(c, true)
		if err != nil {
			return nil, err
		}
		for _, u := range c.StringSlice("journal-unit") {
			// journalctl would add ".service" to a bare name; the trust
			// rule compares _SYSTEMD_UNIT with the name as given.
			if !strings.Contains(u, ".") || strings.ContainsAny(u, " \t\n/") {
				return nil, usageErrorf("--journal-unit %q: want a full unit name such as postfix.service or postfix@-.service", u)
			}
			trust.Units = append(trust.Units, u)
		}
		f.source = "journal"
		dir := c.String("journal-dir")
		if c.IsSet("journal-dir") {
			if dir, err = journalDir(dir); err != nil {
				return nil, err
			}
			// Another directory is another journal, with cursors of its
			// own: keep its checkpoint apart from the system journal's.
			f.source = "journal:" + dir
		}
		// One commit a second at most, as the file follower's SettleFor:
		// each commit rewrites whole pages (32 KiB) whatever it adds.
		f.jrnl = &logparse.JournalFollower{Journalctl: c.String("journalctl"), Directory: dir, Trust: trust,
			BatchEvery: time.Second, Logger: log, NewCorrelator: newCorr}
		return f, nil
	}
	p := c.String("log")
	if p == "" {
		return nil, usageErrorf("--log is empty (want the mail log path, or --journal)")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, usageErrorf("--log %q: %v", p, err)
	}
	f.source = "file:" + abs
	// At most one commit per second at the end of the file: each commit
	// writes every database page it touches (about 20, of 32 KiB, for a
	// few deliveries), and a busy log reaches its end at every poll.
	f.file = &logparse.Follower{Path: abs, Poll: c.Duration("poll"), BatchEvery: 500 * time.Millisecond, SettleFor: time.Second,
		Logger: log, NewCorrelator: newCorr}
	return f, nil
}

// lock sets the host the follower writes as (--host) and takes the lock
// of its host and source, so that a second follower of the same log under
// the same host name is refused; release gives it back.
func (f *follower) lock(c *cli.Context) (release func(), err error) {
	if f.host, err = setWriteHost(c, f.st); err != nil {
		return nil, err
	}
	if release, err = f.st.LockSource(c.Context, f.host, f.source); err != nil {
		return nil, fmt.Errorf("follower refused: %w", err)
	}
	return release, nil
}

// reopen makes the follower re-check and reopen its source (SIGHUP).
func (f *follower) reopen() {
	if f.file != nil {
		f.file.Reopen()
	}
}

// followRetryFirst and followRetryMost bound the follower's backoff
// after a storage error: a database that is away (PostgreSQL restarting,
// the network cut) is retried at 1, 2, 4, 8, 10, 10, ... s, so that the
// follower catches up at most 10 s after it returns.
const (
	followRetryFirst = time.Second
	followRetryMost  = 10 * time.Second
)

// run follows until ctx is done, retrying after storage errors: a database
// that is briefly locked, full or away must not end the follower. The log
// is the buffer: the follower commits nothing while the store fails, keeps
// its position in the store's checkpoint, and resumes from it, so nothing
// is lost or counted twice. The backoff starts again after a run that
// committed. Stopped (ctx done) while the store was failing, run returns
// an error saying so, which makes the exit code of run and follow 1.
func (f *follower) run(ctx context.Context) error {
	if f.keep > 0 {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			retain(rctx, f.st, f.keep, f.log)
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
		f.log.Error("follower stopped; restarting from the last checkpoint", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return f.stoppedFailing()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, followRetryMost)
	}
}

// stoppedFailing is the error of a follower stopped while its last attempt
// had failed, or nil.
func (f *follower) stoppedFailing() error {
	if msg := f.failing.Load(); msg != nil {
		return fmt.Errorf("follower stopped while failing (nothing committed since; the next start resumes from the last checkpoint): %s", *msg)
	}
	return nil
}

func (f *follower) runOnce(ctx context.Context) error {
	raw, err := f.st.Checkpoint(ctx, f.source)
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	var cp logparse.Checkpoint
	if raw != nil {
		if cp, err = logparse.UnmarshalCheckpoint(raw); err != nil {
			return fmt.Errorf("checkpoint of %s is unreadable: %w", f.source, err)
		}
	}
	f.failing.Store(nil) // the store answers again; a failed commit sets it anew
	var added func(*delivery.Delivery)
	if m := f.metrics; m != nil {
		m.Follower.Restored(cp, restoredStats(cp))
		added = m.Deliveries.Add
	}
	commit := func(ctx context.Context, b logparse.Batch) error {
		f.relays.Mark(b.Deliveries)
		_, err := f.st.CommitBatchEach(ctx, f.source, b.Deliveries, b.Checkpoint.Marshal(), added)
		if err == nil {
			f.failing.Store(nil)
			f.commits.Add(1)
			if f.metrics != nil {
				f.metrics.Follower.Committed(b, time.Now())
			}
		}
		if err == nil && !f.warned && b.Stats.Deliveries >= 20 && b.Stats.TLSLines == 0 {
			f.warned = true
			f.log.Warn(tlsLoggingHint)
		}
		return err
	}
	if f.jrnl != nil {
		err = f.jrnl.Run(ctx, cp, commit)
	} else {
		err = f.file.Run(ctx, cp, commit)
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func postfixUserFlag() cli.Flag {
	return &cli.StringFlag{Name: "postfix-user", Value: "postfix",
		Usage: "Postfix's mail_owner, by `NAME` or uid: journal entries that claim to be Postfix's smtp or lmtp are believed only from this uid or root"}
}

// journalTrust is the rule for journal entries: --postfix-user's uid and
// root. When strict is false and --postfix-user was not given, a missing
// user is not an error: only root is trusted (import of a file that may
// have no journal entries at all).
func journalTrust(c *cli.Context, strict bool) (logparse.JournalTrust, error) {
	name := c.String("postfix-user")
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return logparse.JournalTrust{UIDs: []uint32{uint32(n)}}, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		if !strict && !c.IsSet("postfix-user") {
			return logparse.JournalTrust{}, nil
		}
		return logparse.JournalTrust{}, usageErrorf("--postfix-user %q: no such user (want Postfix's mail_owner, see postconf -h mail_owner, by name or uid)", name)
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return logparse.JournalTrust{}, usageErrorf("--postfix-user %q: uid %q is not a number", name, u.Uid)
	}
	return logparse.JournalTrust{UIDs: []uint32{uint32(n)}}, nil
}

// describeTrust names the trusted non-root uid for messages.
func describeTrust(c *cli.Context, t logparse.JournalTrust) string {
	if len(t.UIDs) == 0 {
		return fmt.Sprintf("--postfix-user's (user %q not found)", c.String("postfix-user"))
	}
	if name := c.String("postfix-user"); name != strconv.Itoa(int(t.UIDs[0])) {
		return fmt.Sprintf("--postfix-user's (%s, uid %d)", name, t.UIDs[0])
	}
	return fmt.Sprintf("--postfix-user's (uid %d)", t.UIDs[0])
}

// journalDir checks --journal-dir and makes it absolute.
func journalDir(dir string) (string, error) {
	if dir == "" {
		return "", usageErrorf("--journal-dir is empty (want the directory that holds the *.journal files, e.g. /var/log/journal)")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", usageErrorf("--journal-dir %q: %v", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", usageErrorf("--journal-dir %q: %v (want the directory that holds the *.journal files, e.g. /var/log/journal)", dir, errors.Unwrap(err))
	}
	if !fi.IsDir() {
		return "", usageErrorf("--journal-dir %q is not a directory (want the directory that holds the *.journal files, e.g. /var/log/journal)", dir)
	}
	return abs, nil
}
