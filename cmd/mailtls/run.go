package main

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/daemon"
	"github.com/mailtls/mailtls/tlsrpt"
	"github.com/mailtls/mailtls/tlsrpt/daily"
)

func runCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "the main job: TLS policy daemon and mail log follower in one process",
		UsageText: "mailtls run\n" +
			"mailtls run --log /var/log/mail.log --db /var/lib/mailtls/mailtls.db\n" +
			"mailtls run --journal                 # journald-only systems (Debian 12)\n" +
			"mailtls run --config /etc/mailtls/mailtls.conf\n\n" +
			"SIGTERM/SIGINT: graceful stop. SIGHUP: reopen the log, re-read the config file\n" +
			"(default and log-level) and reload overrides.",
		Flags:  append(append(daemonFlags(), followFlags()...), runTLSRPTFlags()...),
		Action: func(c *cli.Context) error { return runAction(c, e) },
	}
}

// runAction is `mailtls run`: the daemon, the follower, the web listener
// and, with --tlsrpt, the TLSRPT job, until the follower stops.
func runAction(c *cli.Context, e env) error {
	level := new(slog.LevelVar)
	log, st, err := startLong(c, e, level)
	if err != nil {
		return err
	}
	defer st.Close()
	var job *daily.Job
	if c.Bool("tlsrpt") {
		if job, err = newTLSRPTJob(c, log, false); err != nil {
			return err
		}
		job.St = st
	}
	fol, release, err := startFollower(c, st, log)
	if err != nil {
		return err
	}
	defer release()
	d, err := startDaemon(c, st, log, fol)
	if err != nil {
		return err
	}
	defer d.Stop()
	log.Info("mailtls run started", "listeners", d.Listeners(), "db", dbName(c),
		"host", fol.Host(), "log", fol.SourceName(), "default", c.String("default"))
	defer startTLSRPTLoop(c.Context, job)()
	return d.RunFollower(c.Context, fol, func() { reloadConfig(c, d, level, log) })
}

// startTLSRPTLoop runs job's daily loop, when there is a job, until the
// returned stop is called.
func startTLSRPTLoop(ctx context.Context, job *daily.Job) (stop func()) {
	if job == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { defer close(stopped); job.Loop(ctx, func() time.Duration { return rand.N(tlsrpt.MaxDelay) }) }()
	return func() { cancel(); <-stopped }
}

// reloadConfig re-reads the config file and applies the settings that can
// change live: default and log-level. Other settings need a restart, which
// is logged. A bad config file is logged and ignored: the running settings
// stay. (The daemon then reloads the overrides in any case.)
func reloadConfig(c *cli.Context, d *daemon.Daemon, level *slog.LevelVar, log *slog.Logger) {
	_, known := conf.Names(c)
	path, vals, err := conf.File(c, known)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.Error("config reload failed; keeping current settings", "file", path, "err", err)
		}
		return
	}
	if v, ok := vals["default"]; ok && !c.IsSet("default") {
		def, err := parseDefault(v)
		if err != nil {
			log.Error("config reload: bad default; keeping current", "err", err)
		} else {
			d.SetDefault(def)
			log.Info("default answer updated", "default", v)
		}
	}
	if v, ok := vals["log-level"]; ok {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			log.Error("config reload: bad log-level; keeping current", "err", err)
		}
	}
}
