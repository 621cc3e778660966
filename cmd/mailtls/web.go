package main

import (
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/daemon"
	"github.com/mailtls/mailtls/ingest"
	"github.com/mailtls/mailtls/store"
)

func httpFlag(def string) cli.Flag {
	return &cli.StringFlag{Name: "http", Value: def,
		Usage: "HTTP listener `ADDR` for /metrics (Prometheus), / (HTML report) and /healthz (empty disables)"}
}

func metricsDomainsFlag() cli.Flag {
	return &cli.IntFlag{Name: "metrics-domains",
		Usage: "give the top `N` recipient domains by volume (last 7 days, updated hourly) a domain label on the delivery metrics; the rest are \"other\" (0: no domain label)"}
}

// httpConfig is --http, --allow-remote and --metrics-domains.
func httpConfig(c *cli.Context) daemon.HTTP {
	return daemon.HTTP{Addr: c.String("http"), AllowRemote: c.Bool("allow-remote"), Domains: c.Int("metrics-domains")}
}

// startWeb opens the --http listener of `follow` (fol; d is nil: the
// daemon of run and serve opens its own).
func startWeb(c *cli.Context, st *store.Store, log *slog.Logger, d *daemon.Daemon, fol *ingest.Follower) (web, error) {
	w, err := daemon.StartWeb(c.Context, st, httpConfig(c), d, fol, log)
	return web{w}, usageOf(err)
}

// web is follow's listener, as follow.go stops it and names its address.
type web struct{ w *daemon.Web }

func (w web) addr() string { return w.w.Addr() }

func (w web) stop() { w.w.Stop() }
