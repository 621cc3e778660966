package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/metrics"
	"github.com/mailtls/mailtls/store"
)

func followFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log", Value: "/var/log/mail.log", Usage: "mail log `PATH` to follow (it may not exist yet)"},
		&cli.BoolFlag{Name: "journal", Usage: "follow journald through journalctl instead of a file"},
		&cli.StringFlag{Name: "journalctl", Value: "journalctl", Usage: "journalctl `PROGRAM` to run with --journal"},
		&cli.DurationFlag{Name: "poll", Value: 250 * time.Millisecond, Usage: "how often to check the log for new lines"},
		&cli.StringFlag{Name: "keep", Usage: "delete deliveries older than `AGE` (e.g. 400d) at start and then daily; reports keep their daily totals (default: keep all)"},
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
			"mailtls follow --journal          # Debian 12 and other journald-only systems\n\n" +
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
			w, err := startWeb(c, st, log, nil, f)
			if err != nil {
				return err
			}
			defer w.stop()
			log.Info("mailtls follow started", "source", f.source, "db", c.String("db"), "http", w.addr())
			return f.run(c.Context)
		},
	}
}

// follower wraps a file or journald follower with checkpoint storage.
type follower struct {
	source string
	st     *store.Store
	log    *slog.Logger
	file   *logparse.Follower
	jrnl   *logparse.JournalFollower
	warned bool          // the smtp_tls_loglevel hint was logged
	keep   time.Duration // --keep: delete deliveries older than this (0: keep all)

	metrics *metrics.Metrics       // nil without --http; set before run
	failing atomic.Pointer[string] // why the last run failed, until the next one starts
}

func newFollower(c *cli.Context, st *store.Store, log *slog.Logger) (*follower, error) {
	f := &follower{st: st, log: log}
	if k := c.String("keep"); k != "" {
		var err error
		if f.keep, err = parseRetention(k, "--keep"); err != nil {
			return nil, err
		}
	}
	newCorr := func() *logparse.Correlator {
		return logparse.NewCorrelator(logparse.Options{RefTime: time.Now()})
	}
	if c.Bool("journal") {
		f.source = "journal"
		// One commit a second at most, as the file follower's SettleFor:
		// each commit rewrites whole pages (32 KiB) whatever it adds.
		f.jrnl = &logparse.JournalFollower{Journalctl: c.String("journalctl"), BatchEvery: time.Second,
			Logger: log, NewCorrelator: newCorr}
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

// reopen makes the follower re-check and reopen its source (SIGHUP).
func (f *follower) reopen() {
	if f.file != nil {
		f.file.Reopen()
	}
}

// run follows until ctx is done, retrying after storage errors: a database
// that is briefly locked or full must not end the follower; it resumes from
// the last committed checkpoint, so nothing is lost or counted twice.
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
	backoff := time.Second
	for {
		err := f.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			return nil
		}
		msg := err.Error()
		f.failing.Store(&msg)
		f.log.Error("follower stopped; restarting from the last checkpoint", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		if backoff < 30*time.Second {
			backoff *= 2
		}
	}
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
	var added func(*store.Delivery)
	if m := f.metrics; m != nil {
		m.Follower.Restored(cp, restoredStats(cp))
		added = m.Deliveries.Add
	}
	commit := func(ctx context.Context, b logparse.Batch) error {
		_, err := f.st.CommitBatchEach(ctx, f.source, toStore(b.Deliveries), b.Checkpoint.Marshal(), added)
		if err == nil {
			f.failing.Store(nil)
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
