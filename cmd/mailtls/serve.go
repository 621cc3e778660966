package main

import (
	"errors"
	"log/slog"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/daemon"
	"github.com/mailtls/mailtls/ingest"
	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/published"
	"github.com/mailtls/mailtls/store"
)

// daemonFlags are shared by `serve` and `run`.
func daemonFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "socketmap", Value: "127.0.0.1:8470", Usage: "socketmap listener `ADDR` (empty disables)"},
		&cli.StringFlag{Name: "tcp", Value: "127.0.0.1:8471", Usage: "tcp_table listener `ADDR` (empty disables)"},
		&cli.StringFlag{Name: "unix", Usage: "also serve socketmap on this unix socket `PATH`"},
		&cli.StringFlag{Name: "tcp-unix", Usage: "also serve tcp_table on this unix socket `PATH`"},
		&cli.StringFlag{Name: "unix-mode", Value: "0660", Usage: "permission `MODE` of the unix sockets (octal)"},
		&cli.StringFlag{Name: "unix-group", Usage: "group `NAME` of the unix sockets, e.g. postfix (mailtls must be a member)"},
		&cli.StringFlag{Name: "map", Value: "tlspolicy", Usage: "socketmap map `NAME` to answer (others get PERM); NAME-tlsrpt answers the same with TLSRPT attributes"},
		&cli.BoolFlag{Name: "tlsrpt-attributes", Usage: "add the TLSRPT attributes (policy_type, policy_domain, policy_string, mx_host_pattern) to MTA-STS answers on every listener, for Postfix 3.10 and later (older Postfix rejects them); without it only socketmap queries for NAME-tlsrpt get them"},
		&cli.StringFlag{Name: "default", Value: "may", Usage: "answer for destinations without override: a policy `LEVEL`, or notfound to let main.cf decide"},
		&cli.IntFlag{Name: "max-conns", Value: 2000, Usage: "maximum concurrent client connections, all listeners together"},
		&cli.DurationFlag{Name: "idle-timeout", Value: 2 * time.Minute, Usage: "close a client connection idle this long (Postfix closes after 10s idle)"},
		&cli.DurationFlag{Name: "reload-every", Value: 500 * time.Millisecond, Usage: "how often to check the database for override changes"},
		&cli.BoolFlag{Name: "allow-remote", Usage: "allow listening on non-loopback addresses"},
		httpFlag(daemon.DefaultHTTP),
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "log `LEVEL`: debug, info, warn, error"},
		&cli.StringFlag{Name: "config", Usage: "config `FILE` with flag=value lines (default /etc/mailtls/mailtls.conf when present)"},
	}, publishedFlags()...)
}

// publishedFlags are the daemon's flags for the published sources.
func publishedFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "sources", Value: published.AllSources, Usage: "policy `SOURCES` in force, comma-separated, strongest first: override (operator overrides), dane, mta-sts (what destinations publish); override alone answers without DNS"},
		&cli.StringFlag{Name: "resolver", Usage: "DNS resolver `ADDR` (host:port) for DANE and MTA-STS; default: the first nameserver of /etc/resolv.conf. DANE needs a validating resolver on loopback"},
		&cli.DurationFlag{Name: "resolve-timeout", Value: published.DefaultBudget, Usage: "`DURATION` a lookup for a destination seen for the first time waits for DANE and MTA-STS; then the default answers and resolution goes on in the background"},
	}
}

func serveCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run only the TLS policy daemon (socketmap + tcp_table)",
		UsageText: "mailtls serve\n" +
			"mailtls serve --socketmap 127.0.0.1:8470 --tcp 127.0.0.1:8471 --unix /run/mailtls/policy.sock\n" +
			"mailtls serve --default notfound   # let main.cf's smtp_tls_security_level apply\n\n" +
			"Check it with: postmap -q example.com socketmap:inet:127.0.0.1:8470:tlspolicy",
		Flags: daemonFlags(),
		Action: func(c *cli.Context) error {
			log, st, err := startLong(c, e, new(slog.LevelVar))
			if err != nil {
				return err
			}
			defer st.Close()
			d, err := startDaemon(c, st, log, nil)
			if err != nil {
				return err
			}
			log.Info("mailtls serve started", "listeners", d.Listeners(), "db", dbName(c), "default", c.String("default"))
			<-c.Context.Done()
			log.Info("shutting down")
			return d.Stop()
		},
	}
}

// startDaemon starts the daemon the flags ask for, and its web listener,
// feeding the metrics of fol (run's follower, not started yet; nil for
// serve).
func startDaemon(c *cli.Context, st *store.Store, log *slog.Logger, fol *ingest.Follower) (*daemon.Daemon, error) {
	def, err := parseDefault(c.String("default"))
	if err != nil {
		return nil, err
	}
	srcs, err := parseSources(c.String("sources"))
	if err != nil {
		return nil, err
	}
	d, err := daemon.Start(c.Context, st, daemon.Config{
		Default: def, Published: publishedOptions(c, srcs),
		Socketmap: c.String("socketmap"), TCP: c.String("tcp"), Unix: c.String("unix"), TCPUnix: c.String("tcp-unix"),
		UnixMode: c.String("unix-mode"), UnixGroup: c.String("unix-group"), AllowRemote: c.Bool("allow-remote"),
		MapName: c.String("map"), TLSRPT: c.Bool("tlsrpt-attributes"), MaxConns: c.Int("max-conns"),
		IdleTimeout: c.Duration("idle-timeout"), ReloadEvery: c.Duration("reload-every"),
		HTTP: httpConfig(c), Follower: fol, Logger: log,
	})
	return d, usageOf(err)
}

// usageOf makes an error about a flag's value (daemon.ConfigError,
// published.OptionError) a usage error.
func usageOf(err error) error {
	var ce *daemon.ConfigError
	var oe *published.OptionError
	if errors.As(err, &ce) || errors.As(err, &oe) {
		return usageErrorf("%v", err)
	}
	return err
}

// parseDefault validates --default: a policy value or "notfound" ("").
func parseDefault(s string) (string, error) {
	def, err := policyd.ParseDefault(s)
	if err != nil {
		return "", usageErrorf("--default: %v (or notfound)", err)
	}
	return def, nil
}

// parseSources parses --sources.
func parseSources(v string) (published.Sources, error) {
	s, err := published.ParseSources(v)
	if err != nil {
		return s, usageErrorf("--sources %q: %v", v, err)
	}
	return s, nil
}

// publishedOptions are --resolver and --resolve-timeout, for srcs.
func publishedOptions(c *cli.Context, srcs published.Sources) published.Options {
	return published.Options{Sources: srcs, Resolver: c.String("resolver"), Budget: c.Duration("resolve-timeout")}
}

// newPublished builds the resolver of the published sources, or nil when
// dane and mta-sts are both off. store may be nil (no cache kept).
func newPublished(c *cli.Context, srcs published.Sources, st published.Store, active published.ActiveFunc, log *slog.Logger) (*published.Resolver, error) {
	o := publishedOptions(c, srcs)
	o.Store, o.Active, o.Logger = st, active, log
	r, err := published.Open(o)
	return r, usageOf(err)
}
