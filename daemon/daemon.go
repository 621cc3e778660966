// Package daemon is the policy daemon assembled: its listeners
// (socketmap, tcp_table, unix sockets with mode/group), the override
// source adapter over the store, the warm-up loads, reload loop, the
// published sources' daemon side, the web listener (/metrics, report,
// /healthz) and their orderly stop. The commands (serve, run, follow)
// read their flags into a Config (or HTTP) and call Start (or StartWeb);
// a bad flag value comes back as a *ConfigError naming the flag, or as
// published's *OptionError.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailtls/mailtls/ingest"
	"github.com/mailtls/mailtls/metrics"
	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/postconf"
	"github.com/mailtls/mailtls/published"
	"github.com/mailtls/mailtls/store"
)

// Config is what the flags of serve and run ask of the daemon.
type Config struct {
	Default   string            // the answer without override, as policyd.ParseDefault gives it ("": NOTFOUND)
	Published published.Options // Sources, Resolver and Budget; Start sets the rest

	// The listener addresses (--socketmap, --tcp, --unix, --tcp-unix),
	// "" for none, and the octal mode and the group ("": unchanged) of the
	// unix sockets. TCP listeners beyond loopback need AllowRemote.
	Socketmap, TCP, Unix, TCPUnix string
	UnixMode, UnixGroup           string
	AllowRemote                   bool

	MapName     string // the socketmap map answered (policyd.Server.MapName)
	TLSRPT      bool   // the TLSRPT attributes on every listener
	MaxConns    int
	IdleTimeout time.Duration
	ReloadEvery time.Duration // the poll of the override changes
	HTTP        HTTP
	Follower    *ingest.Follower // run's, not started yet, whose metrics the web listener feeds; nil for serve
	Logger      *slog.Logger
}

// ConfigError is a bad Config value, named as the command's flag.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

func configErrorf(format string, args ...any) error {
	return &ConfigError{fmt.Sprintf(format, args...)}
}

// Daemon is the running daemon: its listeners, the loads and the reload
// loop of its table, the published sources and the web listener.
type Daemon struct {
	table   *policyd.Table
	src     policyd.Source
	srv     *policyd.Server
	metrics *metrics.Metrics // nil without --http
	pub     *publishedDaemon // nil: the published sources are off
	web     *Web
	log     *slog.Logger
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

// Start opens every listener and starts serving at once, while the
// overrides and the published cache load in the background (the warm-up).
// Until each load is done, a lookup reads what can match its key from the
// store (policyd.Table.SetWarmup, published.Resolver.Load), so that no
// answer is weaker than with everything loaded; a lookup whose read
// fails gets TEMP. The store must answer at start: serving `may` while
// forced overrides are unreadable would silently weaken them. Then it
// warns where the default is weaker than main.cf, and opens the web
// listener.
func Start(ctx context.Context, st *store.Store, cfg Config) (*Daemon, error) {
	d, err := newDaemon(ctx, st, cfg)
	if err != nil {
		return nil, err
	}
	if err := d.start(ctx, st, cfg); err != nil {
		return nil, err
	}
	warnIfWeaker(ctx, cfg)
	if d.web, err = StartWeb(ctx, st, cfg.HTTP, d, cfg.Follower, cfg.Logger); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// newDaemon builds the daemon's table over the store's overrides (none
// when the sources leave them out), watched by the metrics when there are
// any, and checks that the store answers.
func newDaemon(ctx context.Context, st *store.Store, cfg Config) (*Daemon, error) {
	m, err := NewMetrics(cfg.HTTP, true, cfg.Follower != nil)
	if err != nil {
		return nil, err
	}
	var src policyd.Source = StoreSource{st}
	var keys policyd.KeySource = StoreSource{st}
	if !cfg.Published.Sources.Override {
		src, keys = noOverrides{}, noOverrides{}
	}
	table := policyd.NewTable(cfg.Default)
	if m != nil {
		src = m.Policy.Watch(table, src)
	}
	if _, err := src.Version(ctx); err != nil {
		return nil, fmt.Errorf("load overrides: %w", err)
	}
	table.SetWarmup(keys)
	return &Daemon{table: table, src: src, metrics: m, log: cfg.Logger}, nil
}

// start checks the listener flags, starts the published sources, opens
// the listeners and starts the warm-up.
func (d *Daemon) start(parent context.Context, st *store.Store, cfg Config) error {
	// Flags are checked before the published sources start, so that a
	// usage error is the only line on stderr.
	mode, err := parseMode(cfg.UnixMode)
	if err != nil {
		return err
	}
	specs, err := listenSpecs(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
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
	if d.pub, err = startPublished(ctx, cfg.Published, st, d.log, ovDone, func(n int) {
		d.cached, d.pubLoaded = n, time.Since(d.t0)
		d.warm.Done()
	}); err != nil {
		cancel()
		return err
	}
	if d.pub == nil {
		d.warm.Done()
	} else {
		d.table.SetPublisher(d.pub.r)
	}
	d.srv = &policyd.Server{
		Table: d.table, MapName: cfg.MapName, TLSRPT: cfg.TLSRPT,
		MaxConns: cfg.MaxConns, IdleTimeout: cfg.IdleTimeout, Logger: d.log,
	}
	if d.metrics != nil {
		d.srv.Observer = d.metrics.Lookups
	}
	if err := d.listen(parent, ctx, specs, mode, cfg.UnixGroup); err != nil {
		cancel()
		return err
	}
	override := cfg.Published.Sources.Override
	d.warmUp(ctx, cfg.ReloadEvery, func() <-chan struct{} { return changes(ctx, st, override) }, ovDone, restoreGC)
	serving = true
	return nil
}

// Listeners are the bound addresses, for the start-up log line:
// "socketmap=tcp:127.0.0.1:8470 tcp_table=... http=tcp:...".
func (d *Daemon) Listeners() string { return strings.Join(d.addrs, " ") }

// SetDefault changes the answer without override (policyd.Table.SetDefault).
func (d *Daemon) SetDefault(def string) { d.table.SetDefault(def) }

// RunFollower is run's main loop: it runs fol until it stops, and then
// stops the daemon. On SIGHUP it reopens the log, calls reconfigure (which
// re-reads the settings that can change live) and reloads the overrides;
// on a failure, logged, the last good snapshot keeps serving.
func (d *Daemon) RunFollower(ctx context.Context, fol *ingest.Follower, reconfigure func()) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	done := make(chan error, 1)
	go func() { done <- fol.Run(ctx) }()
	for {
		select {
		case <-hup:
			d.log.Info("SIGHUP: reopening log and reloading configuration")
			fol.Reopen()
			reconfigure()
			if _, err := d.table.Reload(ctx, d.src); err != nil {
				d.log.Error("reload overrides failed; serving the last good snapshot", "err", err)
			}
		case err := <-done:
			d.log.Info("shutting down")
			serr := d.Stop()
			if err != nil {
				return err
			}
			return serr
		}
	}
}

// Stop shuts the servers down gracefully: stop accepting, finish in-flight
// requests, close; then the published sources and the web listener. Safe
// to call twice.
func (d *Daemon) Stop() error {
	d.once.Do(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		d.err = d.srv.Shutdown(sctx)
		d.cancel()
		d.wg.Wait()
		d.pub.stop()
		d.web.Stop()
	})
	return d.err
}

// warnIfWeaker logs a warning, where postconf can read main.cf, when the
// default answer makes destinations without an override weaker than
// Postfix alone would (postconf.Weaker). postconf reads MAIL_CONFIG, as
// every Postfix command does.
func warnIfWeaker(ctx context.Context, cfg Config) {
	if cfg.Default == "" {
		return
	}
	st, ok := postconf.Postconf{Bin: "postconf"}.State(ctx)
	if !ok {
		cfg.Logger.Debug("postconf not available: not comparing the default answer with main.cf")
		return
	}
	ours := postconf.DaemonMaps(cfg.Socketmap, cfg.TCP, cfg.Unix, cfg.TCPUnix, cfg.MapName)
	for _, w := range postconf.Weaker(cfg.Default, st, ours) {
		cfg.Logger.Warn(w.Msg, w.Args...)
	}
}
