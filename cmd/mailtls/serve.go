package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/metrics"
	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/postconf"
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
		httpFlag(defaultHTTP),
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "log `LEVEL`: debug, info, warn, error"},
		&cli.StringFlag{Name: "config", Usage: "config `FILE` with flag=value lines (default /etc/mailtls/mailtls.conf when present)"},
	}, publishedFlags()...)
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
			d, err := startDaemon(c, st, log)
			if err != nil {
				return err
			}
			warnIfWeaker(c, log)
			w, err := startWeb(c, st, log, d, nil)
			if err != nil {
				d.stop()
				return err
			}
			defer w.stop()
			log.Info("mailtls serve started", "listeners", strings.Join(d.addrs, " "), "db", dbName(c), "default", c.String("default"))
			<-c.Context.Done()
			log.Info("shutting down")
			return d.stop()
		},
	}
}

func newLogger(c *cli.Context, e env) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usageErrorf("invalid --log-level %q (want debug, info, warn or error)", c.String("log-level"))
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: lvl})), nil
}

// storeSource adapts the store to policyd.Source.
type storeSource struct{ st overrideSource }

func (s storeSource) Version(ctx context.Context) (uint64, error) { return s.st.OverridesVersion(ctx) }

func (s storeSource) Overrides(ctx context.Context, add func(policyd.Override)) error {
	return s.st.OverridePolicies(ctx, func(key, policy string, expires time.Time) {
		add(policyd.Override{Key: key, Value: policy, Expires: expires})
	})
}

// OverridesFor makes storeSource a policyd.KeySource, for the lookups of
// the warm-up.
func (s storeSource) OverridesFor(ctx context.Context, keys []string, add func(policyd.Override)) error {
	return s.st.OverridesFor(ctx, keys, func(key, policy string, expires time.Time) {
		add(policyd.Override{Key: key, Value: policy, Expires: expires})
	})
}

// parseDefault validates --default: a policy value or "notfound" ("").
func parseDefault(s string) (string, error) {
	def, err := policyd.ParseDefault(s)
	if err != nil {
		return "", usageErrorf("--default: %v (or notfound)", err)
	}
	return def, nil
}

type daemon struct {
	table   *policyd.Table
	src     policyd.Source
	srv     *policyd.Server
	metrics *metrics.Metrics // nil without --http
	pub     *publishedDaemon // nil: the published sources are off
	addrs   []string
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
	err     error
	warm    sync.WaitGroup // the start-up loads
	// The start-up loads, for the log line at their end.
	t0                  time.Time
	ovLoaded, pubLoaded time.Duration
	cached              int
}

// listenSpec is one listener to open.
type listenSpec struct{ proto, network, addr string }

// startDaemon opens every listener and starts serving at once, while the
// overrides and the published cache load in the background (the warm-up).
// Until each load is done, a lookup reads what can match its key from the
// store (policyd.Table.SetWarmup, published.Resolver.Load), so that no
// answer is weaker than with everything loaded; a lookup whose read
// fails gets TEMP. The store must answer at start: serving `may` while
// forced overrides are unreadable would silently weaken them.
func startDaemon(c *cli.Context, st *store.Store, log *slog.Logger) (*daemon, error) {
	d, srcs, err := newDaemon(c, st)
	if err != nil {
		return nil, err
	}
	// Flags are checked before the published sources start, so that a
	// usage error is the only line on stderr.
	mode, err := parseMode(c.String("unix-mode"))
	if err != nil {
		return nil, err
	}
	specs, err := listenSpecs(c)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(c.Context))
	d.cancel, d.t0 = cancel, time.Now()
	restoreGC := policyd.WarmupGC()
	serving := false
	defer func() {
		if !serving {
			restoreGC()
		}
	}()
	d.warm.Add(1)
	ovDone := make(chan struct{})
	if d.pub, err = startPublished(ctx, c, srcs, st, log, ovDone, func(n int) {
		d.cached, d.pubLoaded = n, time.Since(d.t0)
		d.warm.Done()
	}); err != nil {
		cancel()
		return nil, err
	}
	if d.pub == nil {
		d.warm.Done()
	} else {
		d.table.SetPublisher(d.pub.r)
	}
	d.srv = &policyd.Server{
		Table: d.table, MapName: c.String("map"), TLSRPT: c.Bool("tlsrpt-attributes"),
		MaxConns: c.Int("max-conns"), IdleTimeout: c.Duration("idle-timeout"), Logger: log,
	}
	if d.metrics != nil {
		d.srv.Observer = d.metrics.Lookups
	}
	if err := d.listen(ctx, c, specs, fs.FileMode(mode), log); err != nil {
		cancel()
		return nil, err
	}
	d.warmUp(ctx, c.Duration("reload-every"), func() <-chan struct{} { return changes(ctx, st, srcs.Override) }, ovDone, restoreGC, log)
	serving = true
	return d, nil
}

// newDaemon builds the daemon's table over the store's overrides (none
// when --sources leaves them out), watched by the metrics when there are
// any, and checks that the store answers.
func newDaemon(c *cli.Context, st *store.Store) (*daemon, published.Sources, error) {
	def, err := parseDefault(c.String("default"))
	if err != nil {
		return nil, published.Sources{}, err
	}
	srcs, err := parseSources(c.String("sources"))
	if err != nil {
		return nil, srcs, err
	}
	m, err := newMetrics(c, true, c.Command.Name == "run")
	if err != nil {
		return nil, srcs, err
	}
	var src policyd.Source = storeSource{st}
	var keys policyd.KeySource = storeSource{st}
	if !srcs.Override {
		src, keys = noOverrides{}, noOverrides{}
	}
	table := policyd.NewTable(def)
	if m != nil {
		src = m.Policy.Watch(table, src)
	}
	if _, err := src.Version(c.Context); err != nil {
		return nil, srcs, fmt.Errorf("load overrides: %w", err)
	}
	table.SetWarmup(keys)
	return &daemon{table: table, src: src, metrics: m}, srcs, nil
}

// listenSpecs are the listeners the flags ask for; TCP ones only on
// loopback unless --allow-remote.
func listenSpecs(c *cli.Context) ([]listenSpec, error) {
	var specs []listenSpec
	for _, s := range []struct{ flag, proto, network string }{
		{"socketmap", "socketmap", "tcp"}, {"tcp", "tcp_table", "tcp"},
		{"unix", "socketmap", "unix"}, {"tcp-unix", "tcp_table", "unix"},
	} {
		if a := c.String(s.flag); a != "" {
			if s.network == "tcp" && !c.Bool("allow-remote") {
				if err := checkLoopback(s.flag, a); err != nil {
					return nil, err
				}
			}
			specs = append(specs, listenSpec{s.proto, s.network, a})
		}
	}
	if len(specs) == 0 {
		return nil, usageErrorf("no listener configured (set --socketmap, --tcp, --unix or --tcp-unix)")
	}
	return specs, nil
}

// listen opens every listener and serves it; on an error, those opened
// are closed.
func (d *daemon) listen(ctx context.Context, c *cli.Context, specs []listenSpec, mode fs.FileMode, log *slog.Logger) error {
	var lns []net.Listener
	fail := func(err error) error {
		for _, l := range lns {
			l.Close()
		}
		return err
	}
	for _, sp := range specs {
		ln, err := policyd.Listen(c.Context, sp.network, sp.addr, mode)
		if err != nil {
			return fail(fmt.Errorf("listen %s %s:%s: %w", sp.proto, sp.network, sp.addr, err))
		}
		lns = append(lns, ln)
		if sp.network == "unix" && c.String("unix-group") != "" {
			if err := chgrp(sp.addr, c.String("unix-group")); err != nil {
				return fail(err)
			}
		}
		d.addrs = append(d.addrs, fmt.Sprintf("%s=%s:%s", sp.proto, sp.network, ln.Addr()))
		serve := d.srv.ServeSocketmap
		if sp.proto == "tcp_table" {
			serve = d.srv.ServeTCPTable
		}
		d.wg.Add(1)
		go func(ln net.Listener, proto string) {
			defer d.wg.Done()
			if err := serve(ctx, ln); err != nil && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				log.Error("listener failed", "proto", proto, "addr", ln.Addr().String(), "err", err)
			}
		}(ln, sp.proto)
	}
	return nil
}

// warmUp loads the overrides in the background, then watches them
// (polling every `every`, and at once on what wake returns, asked
// after the first load); ovDone is closed when the
// first load is over. When every start-up load is done, GOGC is restored
// and the end of the warm-up logged.
func (d *daemon) warmUp(ctx context.Context, every time.Duration, wake func() <-chan struct{}, ovDone chan struct{}, restoreGC func(), log *slog.Logger) {
	d.warm.Add(1)
	d.wg.Go(func() {
		// The first load here, so that its end is known; Watch then
		// starts from the version it loaded (or, after a failure, retries
		// at every poll while the warm-up goes on answering).
		if _, err := d.table.Reload(ctx, d.src); err != nil && ctx.Err() == nil {
			log.Error("loading the overrides failed; lookups keep reading them from the store, retrying", "err", err)
		}
		d.ovLoaded = time.Since(d.t0)
		close(ovDone)
		d.warm.Done()
		_ = d.table.WatchWake(ctx, d.src, every, wake(), log)
	})
	d.wg.Go(func() {
		d.warm.Wait()
		restoreGC()
		if ctx.Err() != nil {
			return
		}
		debug.FreeOSMemory() // the garbage of the loads
		args := []any{"overrides", d.table.Load().Len(), "overrides_load", d.ovLoaded.Round(time.Millisecond)}
		if d.pub != nil {
			args = append(args, "published", d.cached, "published_load", d.pubLoaded.Round(time.Millisecond))
		}
		if what := d.loading(); what != "" {
			log.Warn("start-up loads ended without the "+what+": lookups keep reading them from the store", args...)
			return
		}
		log.Info("start-up loads done: answering from memory", args...)
	})
}

// loading says what the daemon is still loading at start-up, or "".
func (d *daemon) loading() string {
	var what []string
	if d.table.Load() == nil {
		what = append(what, "overrides")
	}
	if d.pub != nil && !d.pub.r.Loaded() {
		what = append(what, "published cache")
	}
	return strings.Join(what, " and ")
}

// warnIfWeaker logs a warning, where postconf can read main.cf, when the
// default answer makes destinations without an override weaker than
// Postfix alone would (postconf.Weaker). postconf reads MAIL_CONFIG, as
// every Postfix command does.
func warnIfWeaker(c *cli.Context, log *slog.Logger) {
	def, err := parseDefault(c.String("default"))
	if err != nil || def == "" {
		return
	}
	st, ok := postconf.Postconf{Bin: "postconf"}.State(c.Context)
	if !ok {
		log.Debug("postconf not available: not comparing the default answer with main.cf")
		return
	}
	ours := postconf.DaemonMaps(c.String("socketmap"), c.String("tcp"), c.String("unix"), c.String("tcp-unix"), c.String("map"))
	for _, w := range postconf.Weaker(def, st, ours) {
		log.Warn(w.Msg, w.Args...)
	}
}

// stop shuts the servers down gracefully: stop accepting, finish in-flight
// requests, close. Safe to call twice.
func (d *daemon) stop() error {
	d.once.Do(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		d.err = d.srv.Shutdown(sctx)
		d.cancel()
		d.wg.Wait()
		d.pub.stop()
	})
	return d.err
}

func checkLoopback(flag, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usageErrorf("--%s %q: %v (want HOST:PORT, e.g. 127.0.0.1:8470)", flag, addr, err)
	}
	if !policyd.IsLoopbackHost(host) {
		return usageErrorf("--%s %q is not a loopback address; Postfix policy needs no remote access (pass --allow-remote to override)", flag, addr)
	}
	return nil
}

func parseMode(s string) (uint32, error) {
	var m uint32
	if _, err := fmt.Sscanf(s, "%o", &m); err != nil || m > 0o777 {
		return 0, usageErrorf("invalid --unix-mode %q (want an octal mode such as 0660)", s)
	}
	return m, nil
}

// chgrp gives a unix socket to a group, so that Postfix's smtp(8) (user
// postfix) can connect to a 0660 socket.
func chgrp(path, group string) error {
	g, err := user.LookupGroup(group)
	if err != nil {
		return usageErrorf("--unix-group %q: %v", group, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return usageErrorf("--unix-group %q: bad gid %q", group, g.Gid)
	}
	if err := os.Chown(path, -1, gid); err != nil {
		return fmt.Errorf("--unix-group %s: %w (is mailtls a member of the group?)", group, err)
	}
	return nil
}
