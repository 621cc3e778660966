// Command benchrun takes the figures of BENCHMARKS.md: policy lookups
// against mta-sts-daemon and a no-op server, log ingestion against
// pflogsumm and postfix_exporter, and growth (overrides, stored
// deliveries). bench/run.sh (`make bench`) installs the peers, builds this
// program and runs it; the knobs are environment variables:
//
//	BENCH_DIR            work directory, cached logs and databases (/tmp/mailtls-bench)
//	BENCH_RUNS           runs per figure; each figure is the median (3)
//	BENCH_DURATION       length of one lookup load test (5s)
//	BENCH_CONNS          connection counts ("1 8 32 128")
//	BENCH_PIN            1: server on CPU 0, load client on CPU 1 for the lookup tests; 0: unpinned (1)
//	BENCH_PIN_COMPARE    1: also measure 32 connections with the other placement (1)
//	BENCH_LOG_LINES      log sizes ("100000 1000000 5000000")
//	BENCH_OVERRIDES      override table sizes ("10 10000 100000 1000000")
//	BENCH_GROWTH_ROWS    stored deliveries for report timing ("1000000 10000000 30000000")
//	BENCH_REFILL_HOURS   refill a cached delivery database older than this (24)
//	BENCH_SECTIONS       which sections to run ("lookup ingest growth"; also "memory", "postgres")
//	BENCH_PG_LINES       postgres: lines of the import log (4910000: about 1M deliveries)
//	BENCH_PG_HOSTS       postgres: followers at once (4)
//	BENCH_PG_RATE        postgres: deliveries/s written to each follower's log (2000)
//	BENCH_PG_FOLLOW      postgres: how long the writers write (30s)
//	BENCH_PG_ROWS        postgres: stored deliveries for report timing (10000000)
//	BENCH_PG_PROPAGATIONS postgres: override changes timed (20)
//	BENCH_PG_PARTS       postgres: which parts ("import follow propagation reports")
//	BENCH_LOOKUP_ONLY    http: in the lookup section, only mailtls serve without and with --http
//	BENCH_OUT            output file (BENCHMARKS.md)
//	BENCH_BIN            mailtls binary (bin/mailtls)
//	BENCH_FILLDB         filldb binary (built by run.sh)
//	BENCH_TOOL           mailtls-bench binary: load client, echo server, log generator (built by run.sh)
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailtls/mailtls/bench/internal/harness"
)

type config struct {
	bin, tool, filldb, dir, out string
	runs                        int
	dur                         time.Duration
	conns                       []int
	pin, pinCompare             bool
	logLines                    []int
	overrides                   []int
	rows                        []int
	refill                      time.Duration
	sections                    map[string]bool
	lookupOnly                  string // BENCH_LOOKUP_ONLY
	logs                        string // per-process logs

	pgImportLines, pgHosts, pgRate, pgRows, pgPropagations int
	pgFollow                                               time.Duration
}

func env(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}

func ints(name, def string) []int {
	var out []int
	for _, f := range strings.Fields(env(name, def)) {
		n, err := strconv.Atoi(strings.ReplaceAll(f, "_", ""))
		if err != nil || n < 0 {
			fatalf("%s: %q is not a count", name, f)
		}
		out = append(out, n)
	}
	return out
}

func fatalf(format string, args ...any) {
	harness.KillAll()
	fmt.Fprintf(os.Stderr, "benchrun: "+format+"\n", args...)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func main() {
	cfg := config{
		bin:        env("BENCH_BIN", "bin/mailtls"),
		filldb:     env("BENCH_FILLDB", ""),
		tool:       env("BENCH_TOOL", ""),
		dir:        env("BENCH_DIR", "/tmp/mailtls-bench"),
		out:        env("BENCH_OUT", "BENCHMARKS.md"),
		conns:      ints("BENCH_CONNS", "1 8 32 128"),
		pin:        env("BENCH_PIN", "1") == "1",
		pinCompare: env("BENCH_PIN_COMPARE", "1") == "1",
		logLines:   ints("BENCH_LOG_LINES", "100000 1000000 5000000"),
		overrides:  ints("BENCH_OVERRIDES", "10 10000 100000 1000000"),
		rows:       ints("BENCH_GROWTH_ROWS", "1000000 10000000 30000000"),
		sections:   map[string]bool{},
		lookupOnly: env("BENCH_LOOKUP_ONLY", ""),
	}
	if cfg.lookupOnly != "" && cfg.lookupOnly != "http" {
		fatalf("BENCH_LOOKUP_ONLY must be empty or http")
	}
	var err error
	if cfg.runs, err = strconv.Atoi(env("BENCH_RUNS", "3")); err != nil || cfg.runs < 1 {
		fatalf("BENCH_RUNS must be a positive integer")
	}
	if cfg.dur, err = time.ParseDuration(env("BENCH_DURATION", "5s")); err != nil || cfg.dur <= 0 {
		fatalf("BENCH_DURATION must be a duration such as 5s")
	}
	cfg.pgImportLines = ints("BENCH_PG_LINES", "4910000")[0]
	cfg.pgHosts = ints("BENCH_PG_HOSTS", "4")[0]
	cfg.pgRate = ints("BENCH_PG_RATE", "2000")[0]
	cfg.pgRows = ints("BENCH_PG_ROWS", "10000000")[0]
	cfg.pgPropagations = ints("BENCH_PG_PROPAGATIONS", "20")[0]
	if cfg.pgFollow, err = time.ParseDuration(env("BENCH_PG_FOLLOW", "30s")); err != nil || cfg.pgFollow <= 0 {
		fatalf("BENCH_PG_FOLLOW must be a duration such as 30s")
	}
	if cfg.pgHosts < 1 || cfg.pgRate < 1 || cfg.pgPropagations < 1 {
		fatalf("BENCH_PG_HOSTS, BENCH_PG_RATE and BENCH_PG_PROPAGATIONS must be at least 1")
	}
	h, err := strconv.ParseFloat(env("BENCH_REFILL_HOURS", "24"), 64)
	if err != nil {
		fatalf("BENCH_REFILL_HOURS must be a number")
	}
	cfg.refill = time.Duration(h * float64(time.Hour))
	for _, s := range strings.Fields(env("BENCH_SECTIONS", "lookup ingest growth")) {
		cfg.sections[s] = true
	}
	if cfg.bin, err = filepath.Abs(cfg.bin); err != nil {
		fatalf("%v", err)
	}
	if _, err := os.Stat(cfg.bin); err != nil {
		fatalf("mailtls binary: %v (run make build)", err)
	}
	if cfg.tool == "" {
		fatalf("BENCH_TOOL is not set (bench/run.sh builds bench/cmd/mailtls-bench)")
	}
	if err := os.MkdirAll(cfg.dir, 0o755); err != nil {
		fatalf("%v", err)
	}
	cfg.logs = filepath.Join(cfg.dir, "logs")
	_ = os.RemoveAll(cfg.logs)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		harness.KillAll()
		fmt.Fprintf(os.Stderr, "benchrun: %v: stopped\n", s)
		os.Exit(130)
	}()
	defer harness.KillAll()

	harness.Source() // the tree as built, before it can change under a long run
	rep := &report{cfg: cfg, start: time.Now(), loadStart: harness.LoadAvg()}
	fw := harness.WatchForeign(5 * time.Second)
	ctx := context.Background()
	if cfg.sections["lookup"] {
		rep.lookup = runLookup(ctx, cfg)
	}
	if cfg.sections["ingest"] {
		rep.ingest = runIngest(ctx, cfg)
	}
	if cfg.sections["growth"] {
		rep.growth = runGrowth(ctx, cfg)
	}
	if cfg.sections["memory"] {
		rep.memory = runMemory(ctx, cfg)
	}
	if cfg.sections["postgres"] {
		rep.pg = runPostgres(ctx, cfg)
	}
	rep.end = time.Now()
	rep.loadEnd = harness.LoadAvg()
	rep.foreign = fw.Stop()
	if err := os.WriteFile(cfg.out, []byte(rep.markdown()), 0o644); err != nil {
		fatalf("%v", err)
	}
	logf("wrote %s (%s)", cfg.out, rep.end.Sub(rep.start).Round(time.Second))
}
