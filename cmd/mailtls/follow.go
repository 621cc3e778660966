package main

import (
	"log/slog"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/daemon"
	"github.com/mailtls/mailtls/ingest"
	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/report"
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
		Flags:  flags,
		Action: func(c *cli.Context) error { return followAction(c, e) },
	}
}

// followAction is `mailtls follow`: the follower and its web listener.
func followAction(c *cli.Context, e env) error {
	log, st, err := startLong(c, e, new(slog.LevelVar))
	if err != nil {
		return err
	}
	defer st.Close()
	f, release, err := startFollower(c, st, log)
	if err != nil {
		return err
	}
	defer release()
	w, err := daemon.StartWeb(c.Context, st, httpConfig(c), nil, f, log)
	if err != nil {
		return usageOf(err)
	}
	defer w.Stop()
	log.Info("mailtls follow started", "host", f.Host(), "source", f.SourceName(), "db", dbName(c), "http", w.Addr())
	return f.Run(c.Context)
}

// newFollower turns the follow flags into a follower of the log file or
// of journald, writing to st.
func newFollower(c *cli.Context, st ingest.FollowStore, log *slog.Logger) (*ingest.Follower, error) {
	opts := ingest.FollowOptions{Logger: log}
	var err error
	if opts.Relays, err = internalRelays(c); err != nil {
		return nil, err
	}
	if k := c.String("keep"); k != "" {
		if opts.Keep, err = report.ParseRetention(k, "--keep"); err != nil {
			return nil, err
		}
	}
	if c.Bool("journal") || c.IsSet("journal-dir") {
		opts.Source, opts.SourceName, err = journalSource(c, log)
	} else {
		opts.Source, opts.SourceName, err = fileSource(c, log)
	}
	if err != nil {
		return nil, err
	}
	return ingest.NewFollower(st, opts), nil
}

// journalSource is --journal, --journal-dir, --journalctl, --journal-unit
// and --postfix-user.
// The flags are checked before the Postfix user is looked up (NSS).
func journalSource(c *cli.Context, log *slog.Logger) (ingest.Source, string, error) {
	units := c.StringSlice("journal-unit")
	for _, u := range units {
		if err := ingest.CheckJournalUnit(u); err != nil {
			return nil, "", usageErrorf("--journal-unit %v", err)
		}
	}
	dir := c.String("journal-dir")
	if c.IsSet("journal-dir") {
		var err error
		if dir, err = ingest.JournalDir(dir); err != nil {
			return nil, "", usageErrorf("--journal-dir %v", err)
		}
	}
	trust, err := journalTrust(c, true)
	if err != nil {
		return nil, "", err
	}
	trust.Units = append(trust.Units, units...)
	src, name := ingest.JournalSource(c.String("journalctl"), dir, trust, log)
	return src, name, nil
}

// fileSource is --log and --poll.
func fileSource(c *cli.Context, log *slog.Logger) (ingest.Source, string, error) {
	p := c.String("log")
	if p == "" {
		return nil, "", usageErrorf("--log is empty (want the mail log path, or --journal)")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, "", usageErrorf("--log %q: %v", p, err)
	}
	src, name := ingest.FileSource(abs, c.Duration("poll"), log)
	return src, name, nil
}

// startFollower turns the follow flags into a follower writing to st as
// --host, and takes its lock of that host and its source; release gives
// it back.
func startFollower(c *cli.Context, st ingest.FollowStore, log *slog.Logger) (f *ingest.Follower, release func(), err error) {
	if f, err = newFollower(c, st, log); err != nil {
		return nil, nil, err
	}
	host, err := setWriteHost(c, st)
	if err != nil {
		return nil, nil, err
	}
	release, err = f.Lock(c.Context, host)
	return f, release, err
}

func postfixUserFlag() cli.Flag {
	return &cli.StringFlag{Name: "postfix-user", Value: "postfix",
		Usage: "Postfix's mail_owner, by `NAME` or uid: journal entries that claim to be Postfix's smtp or lmtp are believed only from this uid or root"}
}

// journalTrust is --postfix-user (ingest.PostfixTrust); strict: a missing
// user is an error even when the flag was not given.
func journalTrust(c *cli.Context, strict bool) (logparse.JournalTrust, error) {
	t, err := ingest.PostfixTrust(c.String("postfix-user"), c.IsSet("postfix-user"), strict)
	if err != nil {
		return t, usageErrorf("--postfix-user %v", err)
	}
	return t, nil
}
