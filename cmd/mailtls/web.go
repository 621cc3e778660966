package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/httpd"
	"github.com/mailtls/mailtls/ingest"
	"github.com/mailtls/mailtls/metrics"
	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/report"
	"github.com/mailtls/mailtls/store"
)

// defaultHTTP is where `run` and `serve` listen for /metrics, / and
// /healthz. `follow` listens only when given --http, so that it can run
// beside `serve` on one host.
const defaultHTTP = "127.0.0.1:8472"

func httpFlag(def string) cli.Flag {
	return &cli.StringFlag{Name: "http", Value: def,
		Usage: "HTTP listener `ADDR` for /metrics (Prometheus), / (HTML report) and /healthz (empty disables)"}
}

func metricsDomainsFlag() cli.Flag {
	return &cli.IntFlag{Name: "metrics-domains",
		Usage: "give the top `N` recipient domains by volume (last 7 days, updated hourly) a domain label on the delivery metrics; the rest are \"other\" (0: no domain label)"}
}

// maxMetricsDomains bounds --metrics-domains: each domain adds about 15 series.
const maxMetricsDomains = 1000

// newMetrics validates --http and --metrics-domains and returns this
// process's metrics, or nil when --http is empty.
func newMetrics(c *cli.Context, daemon, follower bool) (*metrics.Metrics, error) {
	addr := c.String("http")
	if addr == "" {
		return nil, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, usageErrorf("--http %q: %v (want HOST:PORT, e.g. %s, or '' to disable)", addr, err, defaultHTTP)
	}
	if !c.Bool("allow-remote") && !policyd.IsLoopbackHost(host) {
		return nil, usageErrorf("--http %q is not a loopback address; the metrics and the report need no remote access (pass --allow-remote to override, behind a firewall or a reverse proxy)", addr)
	}
	n := c.Int("metrics-domains")
	if n < 0 || n > maxMetricsDomains {
		return nil, usageErrorf("invalid --metrics-domains %d (want 0 to %d)", n, maxMetricsDomains)
	}
	return metrics.New(metrics.Options{Daemon: daemon, Follower: follower, Domains: n}), nil
}

// web is the running HTTP listener and what feeds its metrics.
type web struct {
	srv    *httpd.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// startWeb opens the --http listener of `run` (d and fol), `serve` (d) or
// `follow` (fol). It returns a nil *web, whose stop does nothing, when
// --http is empty. The follower must not have started yet.
func startWeb(c *cli.Context, st *store.Store, log *slog.Logger, d *daemon, fol *ingest.Follower) (*web, error) {
	m := (*metrics.Metrics)(nil)
	if d != nil {
		m = d.metrics
	} else {
		var err error
		if m, err = newMetrics(c, false, true); err != nil {
			return nil, err
		}
	}
	if m == nil {
		return nil, nil
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(c.Context))
	w := &web{cancel: cancel}
	if fol != nil {
		w.feedFollower(ctx, c, st, log, d, fol, m)
	}
	srv, err := httpd.Listen(c.Context, c.String("http"), httpd.Options{
		Metrics: m.Handler(),
		Index:   report.Handler(st, time.Now, log),
		Health:  func() error { return health(d, fol) },
		Logger:  log,
	})
	if err != nil {
		w.stop()
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("--http %s: %w (give --http another address, or '' to turn the listener off)", c.String("http"), err)
		}
		return nil, fmt.Errorf("--http %s: %w", c.String("http"), err)
	}
	w.srv = srv
	if d != nil {
		d.addrs = append(d.addrs, w.addr())
	}
	return w, nil
}

// feedFollower gives the follower's metrics what they need: the
// overrides (to count plaintext to forced destinations) and, with
// --metrics-domains, the top domains.
func (w *web) feedFollower(ctx context.Context, c *cli.Context, st *store.Store, log *slog.Logger, d *daemon, fol *ingest.Follower, m *metrics.Metrics) {
	table := (*policyd.Table)(nil)
	if d != nil {
		table = d.table
	} else {
		// A standalone follower knows the overrides from the store.
		table = policyd.NewTable("")
		src := m.Policy.Watch(table, storeSource{st})
		if _, err := table.Reload(c.Context, src); err != nil {
			log.Error("reading overrides failed; plaintext to forced destinations is not counted until they load", "err", err)
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			_ = table.WatchWake(ctx, src, time.Second, changes(ctx, st, true), log)
		}()
	}
	m.Deliveries.SetForced(metrics.ForcedBy(table))
	fol.Metrics = m
	if n := c.Int("metrics-domains"); n > 0 {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			tick := time.NewTicker(time.Hour)
			defer tick.Stop()
			m.Deliveries.TrackTopDomains(ctx, topDomains(st), n, time.Now, tick.C, log)
		}()
	}
}

// addr is the listener's address for the start-up log line ("" if none).
func (w *web) addr() string {
	if w == nil || w.srv == nil {
		return ""
	}
	return "http=tcp:" + w.srv.Addr().String()
}

// stop closes the listener and stops feeding the metrics. Safe to call
// twice, and on a nil *web.
func (w *web) stop() {
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
func health(d *daemon, fol *ingest.Follower) error {
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
