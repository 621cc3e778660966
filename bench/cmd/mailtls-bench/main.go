// Command mailtls-bench holds the load and data generators of make bench
// and make faults, kept out of the mailtls binary that administrators run:
//
//	mailtls-bench lookup  --addr 127.0.0.1:8470 --conns 32 --duration 5s [--proto tcp] [--keys K1,K2] [--format json]
//	mailtls-bench echo    --addr 127.0.0.1:8479
//	mailtls-bench gen-log --lines 1000000 --days 7 [--seed 1] [--domains 2000] > mail.log
//
// lookup load-tests any socketmap or tcp_table server (ours or another)
// over persistent connections; echo is a no-op socketmap server answering
// "OK may" to everything, the ceiling of the machine for the lookup
// benchmarks; gen-log writes a deterministic synthetic Postfix log.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mailtls/mailtls/bench/gen"
	"github.com/mailtls/mailtls/internal/loadgen"
	"github.com/mailtls/mailtls/policyd"
)

const usage = "usage: mailtls-bench lookup|echo|gen-log [flags] (mailtls-bench COMMAND -h lists the flags)"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "mailtls-bench:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	fs := flag.NewFlagSet("mailtls-bench "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch args[0] {
	case "lookup":
		return lookup(ctx, fs, args[1:], stdout)
	case "echo":
		return echo(ctx, fs, args[1:], stderr)
	case "gen-log":
		return genLog(fs, args[1:], stdout, stderr)
	default:
		return fmt.Errorf("unknown command %q; %s", args[0], usage)
	}
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q (flags only)", fs.Name(), fs.Arg(0))
	}
	return nil
}

func lookup(ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	proto := fs.String("proto", "socketmap", "protocol: socketmap or tcp")
	network := fs.String("network", "tcp", "network: tcp or unix")
	addr := fs.String("addr", "127.0.0.1:8470", "server address (or socket path)")
	mapName := fs.String("map", policyd.DefaultMapName, "socketmap map name")
	conns := fs.Int("conns", 32, "persistent connections (1-10000)")
	dur := fs.Duration("duration", 5*time.Second, "how long to run (at most 10m)")
	maxReq := fs.Int64("max-requests", 50_000_000, "stop after this many requests")
	keys := fs.String("keys", "example.com,a.b.corp.example,[192.0.2.1]:25", "comma-separated lookup keys")
	format := fs.String("format", "text", "output: text or json")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *format != "text" && *format != "json":
		return fmt.Errorf("invalid --format %q (want text or json)", *format)
	case *conns < 1 || *conns > 10000:
		return fmt.Errorf("invalid --conns %d (want 1 to 10000)", *conns)
	case *dur <= 0 || *dur > 10*time.Minute:
		return fmt.Errorf("invalid --duration %s (want more than 0, at most 10m)", *dur)
	}
	res, err := loadgen.RunLoad(ctx, loadgen.LoadConfig{
		Network: *network, Addr: *addr, Proto: *proto, MapName: *mapName,
		Conns: *conns, Duration: *dur, MaxRequests: *maxReq, Keys: strings.Split(*keys, ","),
	})
	if err != nil {
		return err
	}
	if *format == "json" {
		return json.NewEncoder(stdout).Encode(map[string]any{
			"requests": res.Requests, "errors": res.Errors, "per_sec": res.PerSec,
			"p50_us": res.P50.Microseconds(), "p99_us": res.P99.Microseconds(),
			"p999_us": res.P999.Microseconds(), "max_us": res.Max.Microseconds(),
		})
	}
	_, err = fmt.Fprintf(stdout, "%d lookups, %d errors, %.0f lookups/s, p50 %s, p99 %s, p99.9 %s, max %s\n",
		res.Requests, res.Errors, res.PerSec, res.P50, res.P99, res.P999, res.Max)
	return err
}

func echo(ctx context.Context, fs *flag.FlagSet, args []string, stderr io.Writer) error {
	addr := fs.String("addr", "127.0.0.1:8479", "listen address (loopback only)")
	if err := parse(fs, args); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("invalid --addr %q: %v (want HOST:PORT on loopback, e.g. 127.0.0.1:8479)", *addr, err)
	}
	if !policyd.IsLoopbackHost(host) {
		return fmt.Errorf("--addr %q is not a loopback address (the echo server listens on loopback only)", *addr)
	}
	ln, err := policyd.Listen(ctx, "tcp", *addr, 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "echo listening on %s\n", ln.Addr())
	return loadgen.ServeEcho(ctx, ln)
}

func genLog(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	lines := fs.Int("lines", 100000, "approximate number of lines")
	seed := fs.Uint64("seed", 1, "random seed (the same seed gives the same log)")
	days := fs.Int("days", 7, "span in days, ending now")
	domains := fs.Int("domains", 2000, "number of recipient domains")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *lines < 1 || *days < 1 || *domains < 1 {
		return errors.New("--lines, --days and --domains must be at least 1")
	}
	span := time.Duration(*days) * 24 * time.Hour
	bw := bufio.NewWriterSize(stdout, 1<<20)
	truth, err := gen.Log(bw, gen.LogConfig{
		Seed: *seed, Start: time.Now().Add(-span).UTC().Truncate(time.Second), Duration: span,
		Lines: *lines, Domains: *domains,
	})
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%d lines, %d deliveries\n", truth.Lines, len(truth.Deliveries))
	return nil
}
