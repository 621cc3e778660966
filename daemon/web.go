package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/mailtls/mailtls/httpd"
	"github.com/mailtls/mailtls/ingest"
	"github.com/mailtls/mailtls/metrics"
	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/report"
	"github.com/mailtls/mailtls/store"
)

// DefaultHTTP is where `run` and `serve` listen for /metrics, / and
// /healthz. `follow` listens only when given --http, so that it can run
// beside `serve` on one host.
const DefaultHTTP = "127.0.0.1:8472"

// maxMetricsDomains bounds --metrics-domains: each domain adds about 15 series.
const maxMetricsDomains = 1000

// HTTP is what the flags ask of the web listener: its address (--http,
// "" for none), whether it may be beyond loopback (--allow-remote), and
// how many top domains get a label on the delivery metrics
// (--metrics-domains).
type HTTP struct {
	Addr        string
	AllowRemote bool
	Domains     int
}

// NewMetrics validates h and returns the metrics of a process with a
// daemon, a follower or both, or nil when h.Addr is empty.
func NewMetrics(h HTTP, daemon, follower bool) (*metrics.Metrics, error) {
	if h.Addr == "" {
		return nil, nil
	}
	host, _, err := net.SplitHostPort(h.Addr)
	if err != nil {
		return nil, configErrorf("--http %q: %v (want HOST:PORT, e.g. %s, or '' to disable)", h.Addr, err, DefaultHTTP)
	}
	if !h.AllowRemote && !policyd.IsLoopbackHost(host) {
		return nil, configErrorf("--http %q is not a loopback address; the metrics and the report need no remote access (pass --allow-remote to override, behind a firewall or a reverse proxy)", h.Addr)
	}
	if h.Domains < 0 || h.Domains > maxMetricsDomains {
		return nil, configErrorf("invalid --metrics-domains %d (want 0 to %d)", h.Domains, maxMetricsDomains)
	}
	return metrics.New(metrics.Options{Daemon: daemon, Follower: follower, Domains: h.Domains}), nil
}

// Web is the running HTTP listener and what feeds its metrics.
type Web struct {
	srv    *httpd.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// StartWeb opens the web listener of `run` (d and fol), `serve` (d) or
// `follow` (fol). It returns a nil *Web, whose methods do nothing, when
// h.Addr is empty. The follower must not have started yet.
func StartWeb(ctx context.Context, st *store.Store, h HTTP, d *Daemon, fol *ingest.Follower, log *slog.Logger) (*Web, error) {
	m := (*metrics.Metrics)(nil)
	if d != nil {
		m = d.metrics
	} else {
		var err error
		if m, err = NewMetrics(h, false, true); err != nil {
			return nil, err
		}
	}
	if m == nil {
		return nil, nil
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &Web{cancel: cancel}
	if fol != nil {
		w.feedFollower(ctx, wctx, st, h.Domains, log, d, fol, m)
	}
	srv, err := httpd.Listen(ctx, h.Addr, httpd.Options{
		Metrics: m.Handler(),
		Index:   report.Handler(st, time.Now, log),
		Health:  func() error { return health(d, fol) },
		Logger:  log,
	})
	if err != nil {
		w.Stop()
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("--http %s: %w (give --http another address, or '' to turn the listener off)", h.Addr, err)
		}
		return nil, fmt.Errorf("--http %s: %w", h.Addr, err)
	}
	w.srv = srv
	if d != nil {
		d.addrs = append(d.addrs, w.Addr())
	}
	return w, nil
}

// feedFollower gives the follower's metrics what they need: the
// overrides (to count plaintext to forced destinations) and, with
// --metrics-domains, the top domains; until ctx ends.
func (w *Web) feedFollower(parent, ctx context.Context, st *store.Store, domains int, log *slog.Logger, d *Daemon, fol *ingest.Follower, m *metrics.Metrics) {
	table := (*policyd.Table)(nil)
	if d != nil {
		table = d.table
	} else {
		// A standalone follower knows the overrides from the store.
		table = policyd.NewTable("")
		src := m.Policy.Watch(table, StoreSource{st})
		if _, err := table.Reload(parent, src); err != nil {
			log.Error("reading overrides failed; plaintext to forced destinations is not counted until they load", "err", err)
		}
		w.wg.Go(func() { _ = table.WatchWake(ctx, src, time.Second, changes(ctx, st, true), log) })
	}
	m.Deliveries.SetForced(metrics.ForcedBy(table))
	fol.Metrics = m
	if domains > 0 {
		w.wg.Go(func() {
			tick := time.NewTicker(time.Hour)
			defer tick.Stop()
			m.Deliveries.TrackTopDomains(ctx, topDomains(st), domains, time.Now, tick.C, log)
		})
	}
}

// Addr is the listener's address for the start-up log line ("" if none).
func (w *Web) Addr() string {
	if w == nil || w.srv == nil {
		return ""
	}
	return "http=tcp:" + w.srv.Addr().String()
}

// Stop closes the listener and stops feeding the metrics. Safe to call
// twice, and on a nil *Web.
func (w *Web) Stop() {
	if w == nil {
		return
	}
	w.once.Do(func() {
		if w.srv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			w.srv.Shutdown(sctx)
			cancel()
		}
		w.cancel()
		w.wg.Wait()
	})
}

// health is /healthz: the daemon has loaded its overrides and published
// cache (it answers meanwhile, more slowly, from the store), and the
// follower is not failing.
func health(d *Daemon, fol *ingest.Follower) error {
	if d != nil {
		if what := d.loading(); what != "" {
			return errors.New("still loading the " + what)
		}
	}
	if fol != nil {
		if err := fol.Failing(); err != nil {
			return fmt.Errorf("follower failing: %v", err)
		}
	}
	return nil
}

// topDomains ranks the domains by sent deliveries, from the rollups.
func topDomains(st *store.Store) metrics.TopFunc {
	return func(ctx context.Context, since, until time.Time, n int) ([]string, error) {
		rows, err := st.ReportBy(ctx, store.Window{Since: since, Until: until}, "domain", n)
		top := make([]string, len(rows))
		for i, r := range rows {
			top[i] = r.Key
		}
		return top, err
	}
}
