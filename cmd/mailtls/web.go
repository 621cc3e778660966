package main

import (
	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/daemon"
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
