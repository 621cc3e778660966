package main

import (
	"bufio"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/policyd"
)

func benchLookupCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "bench-lookup",
		Usage: "load-test a socketmap or tcp_table server (ours or another) over persistent connections",
		UsageText: "mailtls bench-lookup --addr 127.0.0.1:8470 --conns 32 --duration 10s\n" +
			"mailtls bench-lookup --proto tcp --addr 127.0.0.1:8471 --keys '[192.0.2.1]:25,.example.com'",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "proto", Value: "socketmap", Usage: "`PROTOCOL`: socketmap or tcp"},
			&cli.StringFlag{Name: "network", Value: "tcp", Usage: "`NETWORK`: tcp or unix"},
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:8470", Usage: "server `ADDR` (or socket path)"},
			&cli.StringFlag{Name: "map", Value: "tlspolicy", Usage: "socketmap map `NAME`"},
			&cli.IntFlag{Name: "conns", Value: 32, Usage: "persistent connections"},
			&cli.DurationFlag{Name: "duration", Value: 5 * time.Second, Usage: "how long to run"},
			&cli.Int64Flag{Name: "max-requests", Value: 50_000_000, Usage: "stop after this many requests"},
			&cli.StringFlag{Name: "keys", Value: "example.com,a.b.corp.example,[192.0.2.1]:25", Usage: "comma-separated lookup `KEYS`"},
			formatFlag("text", "text|json"),
		},
		Action: func(c *cli.Context) error {
			if err := checkFormat(c.String("format"), "text", "json"); err != nil {
				return err
			}
			proto := c.String("proto")
			if proto != "socketmap" && proto != "tcp" {
				return usageErrorf("invalid --proto %q (want socketmap or tcp)", proto)
			}
			if c.Int("conns") < 1 || c.Int("conns") > 10000 {
				return usageErrorf("--conns must be between 1 and 10000")
			}
			if d := c.Duration("duration"); d <= 0 || d > 10*time.Minute {
				return usageErrorf("--duration must be between 1ns and 10m")
			}
			keys := strings.Split(c.String("keys"), ",")
			res, err := policyd.RunLoad(c.Context, policyd.LoadConfig{
				Network: c.String("network"), Addr: c.String("addr"), Proto: proto, MapName: c.String("map"),
				Conns: c.Int("conns"), Duration: c.Duration("duration"), MaxRequests: c.Int64("max-requests"), Keys: keys,
			})
			if err != nil {
				return err
			}
			if c.String("format") == "json" {
				return writeJSON(e.stdout, map[string]any{
					"requests": res.Requests, "errors": res.Errors, "per_sec": res.PerSec,
					"p50_us": res.P50.Microseconds(), "p99_us": res.P99.Microseconds(),
					"p999_us": res.P999.Microseconds(), "max_us": res.Max.Microseconds(),
				})
			}
			fmt.Fprintf(e.stdout, "%d lookups, %d errors, %.0f lookups/s, p50 %s, p99 %s, p99.9 %s, max %s\n",
				res.Requests, res.Errors, res.PerSec, res.P50, res.P99, res.P999, res.Max)
			return nil
		},
	}
}

// benchEchoCommand runs a no-op netstring server that answers "OK may" to
// everything: the ceiling of this machine for the lookup benchmarks.
func benchEchoCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "bench-echo",
		Usage:     "no-op socketmap server (benchmark baseline)",
		UsageText: "mailtls bench-echo --addr 127.0.0.1:8479",
		Hidden:    true,
		Flags:     []cli.Flag{&cli.StringFlag{Name: "addr", Value: "127.0.0.1:8479", Usage: "listen `ADDR`"}},
		Action: func(c *cli.Context) error {
			if err := checkLoopback("addr", c.String("addr")); err != nil {
				return err
			}
			ln, err := policyd.Listen(c.Context, "tcp", c.String("addr"), 0)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "echo listening on %s\n", ln.Addr())
			return policyd.ServeEcho(c.Context, ln)
		},
	}
}

// genLogCommand writes a deterministic synthetic Postfix log (benchmarks,
// demos).
func genLogCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "gen-log",
		Usage:     "write a synthetic Postfix mail log (benchmarks and demos)",
		UsageText: "mailtls gen-log --lines 1000000 --days 7 > mail.log",
		Hidden:    true,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "lines", Value: 100000, Usage: "approximate number of `N` lines"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "random seed"},
			&cli.IntFlag{Name: "days", Value: 7, Usage: "span in days, ending now"},
			&cli.IntFlag{Name: "domains", Value: 2000, Usage: "number of recipient domains"},
		},
		Action: func(c *cli.Context) error {
			if c.Int("lines") < 1 || c.Int("days") < 1 || c.Int("domains") < 1 {
				return usageErrorf("--lines, --days and --domains must be at least 1")
			}
			span := time.Duration(c.Int("days")) * 24 * time.Hour
			bw := bufio.NewWriterSize(e.stdout, 1<<20)
			truth, err := logparse.GenerateLog(bw, logparse.GenConfig{
				Seed: c.Uint64("seed"), Start: time.Now().Add(-span).UTC().Truncate(time.Second), Duration: span,
				Lines: c.Int("lines"), Domains: c.Int("domains"),
			})
			if err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "%d lines, %d deliveries\n", truth.Lines, len(truth.Deliveries))
			return nil
		},
	}
}
