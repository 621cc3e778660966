package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mailtls/mailtls/bench/internal/harness"
)

type report struct {
	cfg                config
	start, end         time.Time
	loadStart, loadEnd float64
	foreign            string
	lookup             *lookupResult
	ingest             *ingestResult
	growth             *growthResult
	memory             *memoryResult
	pg                 *pgResult
}

func us(x float64) string { return harness.Int(int64(x + 0.5)) }

func (r *report) markdown() string {
	var b strings.Builder
	cfg := r.cfg
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# mailtls benchmarks\n\n")
	w("This file is written by `make bench` (`bench/run.sh`, which installs the peers from Debian\n")
	w("packages and runs `bench/cmd/benchrun`). Do not edit it by hand: rerun the suite.\n")
	w("Every figure is the **median of %d runs**; comparisons are ratios between runs taken\n", cfg.runs)
	w("back to back in the same pass, and the ratio shown is the median of the per-run ratios.\n\n")
	w("Reproduce: `make bench` (about 20–30 minutes once the cached logs and databases exist;\n")
	w("the first run also generates them). Knobs: `BENCH_RUNS`, `BENCH_DURATION`, `BENCH_CONNS`,\n")
	w("`BENCH_LOG_LINES`, `BENCH_OVERRIDES`, `BENCH_GROWTH_ROWS`, `BENCH_PIN`, `BENCH_DIR`, `BENCH_SECTIONS`\n")
	w("(see the top of `bench/cmd/benchrun/main.go`).\n\n")
	w("## Machine\n\n")
	for _, f := range harness.Machine("go") {
		w("- %s\n", f)
	}
	w("- Load average (1 min) at start %.2f, at end %.2f; the suite took %s.\n", r.loadStart, r.loadEnd, r.end.Sub(r.start).Round(time.Second))
	w("- Quiet? During the suite %s.\n", r.foreign)
	w("- Settings: %d runs per figure, lookup tests of %s, connections %v, work directory `%s`.\n\n", cfg.runs, cfg.dur, cfg.conns, cfg.dir)

	r.targets(&b)
	if r.lookup != nil {
		r.lookupSection(&b)
	}
	if r.ingest != nil {
		r.ingestSection(&b)
	}
	if r.growth != nil {
		r.growthSection(&b)
	}
	if r.memory != nil {
		r.memorySection(&b)
	}
	if r.pg != nil {
		r.postgresSection(&b)
	}
	return b.String()
}

type target struct {
	what, figure string
	pass         bool
	measured     bool
}

func (r *report) targets(b *strings.Builder) {
	var ts []target
	add := func(what string, measured bool, pass bool, figure string) {
		ts = append(ts, target{what, figure, pass, measured})
	}
	if l := r.lookup; l != nil {
		var mix, common *series
		for _, s := range l.rows {
			if s.conns == 32 && s.server == "mailtls serve" && s.proto == "socketmap" {
				if s.keys == mixKeys {
					mix = s
				} else {
					common = s
				}
			}
		}
		var echo *series
		for _, s := range l.rows {
			if s.conns == 32 && s.keys == commonKeys && strings.HasPrefix(s.server, "mailtls-bench echo") {
				echo = s
			}
		}
		echoNote := ""
		if echo != nil {
			echoNote = fmt.Sprintf(" (no-op echo server, same test: p99 %s µs)", us(echo.med(func(x lookupStat) float64 { return float64(x.P99) })))
		}
		if mix != nil && common != nil {
			place, otherPlace := "unpinned", "pinned (server CPU 0, client CPU 1)"
			if r.cfg.pin {
				place, otherPlace = "pinned", "unpinned"
			}
			for _, x := range []struct {
				name string
				s    *series
			}{{"Postfix-like key mix", mix}, {"common keys", common}} {
				ps := x.s.med(func(s lookupStat) float64 { return s.PerSec })
				p99 := x.s.med(func(s lookupStat) float64 { return float64(s.P99) })
				add(fmt.Sprintf("32 connections, %s, %s: ≥ 80,000 lookups/s with p99 ≤ 2 ms", x.name, place), true, ps >= 80000 && p99 <= 2000,
					fmt.Sprintf("%s lookups/s, p99 %s µs%s", harness.Int(int64(ps)), us(p99), echoNote))
			}
			if len(l.other) > 0 {
				s := l.other[0]
				ps := s.med(func(s lookupStat) float64 { return s.PerSec })
				p99 := s.med(func(s lookupStat) float64 { return float64(s.P99) })
				note := ""
				if len(l.other) > 2 {
					note = fmt.Sprintf(" (no-op echo server, same test: p99 %s µs)", us(l.other[2].med(func(x lookupStat) float64 { return float64(x.P99) })))
				}
				add(fmt.Sprintf("32 connections, common keys, %s: ≥ 80,000 lookups/s with p99 ≤ 2 ms", otherPlace), true, ps >= 80000 && p99 <= 2000,
					fmt.Sprintf("%s lookups/s, p99 %s µs%s", harness.Int(int64(ps)), us(p99), note))
			}
		} else {
			add("32 connections: ≥ 80,000 lookups/s with p99 ≤ 2 ms", false, false, "")
		}
		if xs, ok := l.vsMTS[32]; ok {
			m := harness.Median(xs)
			add("32 connections: ≥ 1.8× mta-sts-daemon", true, m >= 1.8, fmt.Sprintf("%.2f×", m))
		} else {
			add("32 connections: ≥ 1.8× mta-sts-daemon", false, false, "")
		}
		if xs, ok := l.vsEcho[32]; ok {
			m := harness.Median(xs)
			add("32 connections: ≥ 70% of the no-op echo server", true, m >= 0.7, fmt.Sprintf("%.0f%%", 100*m))
		} else {
			add("32 connections: ≥ 70% of the no-op echo server", false, false, "")
		}
		if xs, ok := l.vsHTTP[32]; ok {
			m := harness.Median(xs)
			add("32 connections: lookups/s with the --http listener (scraped every second) within 3% of without", true, m >= 0.97 && m <= 1.03,
				fmt.Sprintf("%.3f× (%d scrapes)", m, l.scrapes))
		} else {
			add("32 connections: lookups/s with the --http listener within 3% of without", false, false, "")
		}
	} else {
		add("policy lookup targets (32 connections)", false, false, "")
	}
	if in := r.ingest; in != nil {
		var imp *ingestRow
		for _, row := range in.rows {
			if row.tool == "mailtls import" && row.lines >= 990_000 && row.lines <= 1_010_000 {
				imp = row
			}
		}
		if imp != nil {
			wall := imp.medWall()
			add("import of 1M lines ≤ 4 s", true, wall <= 4, fmt.Sprintf("%.2f s", wall))
			m := harness.Median(in.vsPflogsumm[imp.lines])
			add("import of 1M lines ≥ 5× faster than pflogsumm", true, m >= 5, fmt.Sprintf("%.2f×", m))
			rss := imp.medRSS() / 1024
			add("peak RSS < 100 MB importing 1M lines", true, rss < 100, fmt.Sprintf("%.0f MB", rss))
		} else {
			add("ingestion targets (1M lines)", false, false, "BENCH_LOG_LINES has no 1M size")
		}
	} else {
		add("ingestion targets (1M lines)", false, false, "")
	}
	if g := r.growth; g != nil {
		found := false
		for _, rr := range g.reports {
			if rr.rows != 10_000_000 {
				continue
			}
			m := harness.Median(rr.wall)
			switch rr.window {
			case "--since 7d":
				add("report over 10M rows, 7 days ≤ 1 s", true, m <= 1, fmt.Sprintf("%.3f s", m))
				found = true
			case "--since 90d":
				add("report over 10M rows, 90 days ≤ 3 s", true, m <= 3, fmt.Sprintf("%.3f s", m))
			}
		}
		if !found {
			add("report targets (10M rows)", false, false, "BENCH_GROWTH_ROWS has no 10M size")
		}
		found = false
		for _, o := range g.overrides {
			if o.n == 100_000 {
				found = true
				fa := harness.Median(o.firstAns)
				add("100k overrides load < 1 s (daemon start to first correct answer)", true, fa < 1000, fmt.Sprintf("%.0f ms", fa))
				iw := harness.Median(o.importWall)
				add("100k overrides load < 1 s (`policy import` of a 100k-line table)", true, iw < 1, fmt.Sprintf("%.2f s", iw))
			}
		}
		if !found {
			add("100k overrides load < 1 s", false, false, "BENCH_OVERRIDES has no 100000 size")
		}
	} else {
		add("growth targets", false, false, "")
	}
	if p := r.pg; p != nil {
		p.targets(add)
	}
	fmt.Fprintf(b, "## Targets\n\n")
	t := harness.Table{Head: []string{"target", "figure", "verdict"}}
	for _, x := range ts {
		v := "not measured"
		if x.measured {
			v = "**MISS**"
			if x.pass {
				v = "PASS"
			}
		}
		t.Add(x.what, x.figure, v)
	}
	b.WriteString(t.String())
	b.WriteString("\n")
}

func keysName(k string) string {
	switch k {
	case commonKeys:
		return "common"
	case mixKeys:
		return "Postfix-like mix"
	}
	return k
}

func (r *report) lookupSection(b *strings.Builder) {
	l := r.lookup
	cfg := r.cfg
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 1. Policy lookups\n\n")
	pin := "not pinned (server and client share both CPUs, as Postfix and mailtls do on a real host)"
	if cfg.pin {
		pin = "**pinned**: the servers run under `taskset -c 0`, the load client under `taskset -c 1`, so each has a CPU to itself\n(the Go servers then run with GOMAXPROCS=1)"
	}
	w("Servers, started once and measured in turn (order rotated each run): `mailtls serve --db lookup.db --socketmap ADDR --tcp ADDR --log-level warn`\n")
	w("(database with 5 overrides, incl. `.example.com` and `.corp.example` wildcards), `mta-sts-daemon -c mta-sts-daemon.yml`\n")
	w("(postfix-mta-sts-resolver %s, cache `type: internal`, uvloop %v), and `mailtls-bench echo --addr ADDR`, a no-op netstring\n", l.mtsVersion, l.uvloop)
	w("server answering `OK may` to everything without looking anything up: roughly the ceiling of this machine,\nprotocol and client (its own goroutine-per-connection loop is not tuned, so mailtls can come out above it).\n")
	w("CPU placement: %s.\n\n", pin)
	w("Each cell: `mailtls-bench lookup --proto PROTO --addr ADDR --conns N --duration %s --keys KEYS --format json`\n", cfg.dur)
	w("(persistent connections, one request in flight per connection, latency from write to complete reply).\n\n")
	w("- **common** keys `%s`: answered by all three servers from memory. mta-sts-daemon answers\n", commonKeys)
	w("  NOTFOUND for IP literals and `.parent` keys without DNS; a domain key would make it resolve `_mta-sts` records,\n")
	w("  which this machine cannot (no network), so these keys are its fastest path, not a typical one.\n")
	w("- **Postfix-like mix** `%s`: exact, wildcard, default, mixed-case and bracketed next-hop keys (mailtls only).\n\n", mixKeys)
	t := harness.Table{Head: []string{"server", "proto", "keys", "conns", "lookups/s", "(min–max)", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "errors"}}
	for _, s := range l.rows {
		ps := make([]float64, len(s.runs))
		var errs int64
		for i, x := range s.runs {
			ps[i] = x.PerSec
			errs += x.Errors
		}
		lo, hi := harness.MinMax(ps)
		t.Add(s.server, s.proto, keysName(s.keys), fmt.Sprint(s.conns), harness.Int(int64(harness.Median(ps))),
			harness.Int(int64(lo))+"–"+harness.Int(int64(hi)),
			us(s.med(func(x lookupStat) float64 { return float64(x.P50) })),
			us(s.med(func(x lookupStat) float64 { return float64(x.P99) })),
			us(s.med(func(x lookupStat) float64 { return float64(x.P999) })),
			us(s.med(func(x lookupStat) float64 { return float64(x.Max) })),
			harness.Int(errs))
	}
	b.WriteString(t.String())
	if l.only == "" {
		w("\nRatios (mailtls serve socketmap ÷ peer, common keys, same run; median of %d per-run ratios):\n\n", cfg.runs)
		rt := harness.Table{Head: []string{"conns", "mailtls ÷ mta-sts-daemon", "mailtls ÷ no-op echo"}}
		for _, c := range cfg.conns {
			rt.Add(fmt.Sprint(c), fmt.Sprintf("%.2f×", harness.Median(l.vsMTS[c])), fmt.Sprintf("%.0f%%", 100*harness.Median(l.vsEcho[c])))
		}
		b.WriteString(rt.String())
	}
	r.httpCost(b)
	if len(l.other) > 0 {
		otherName := "**pinned**: each server started under `taskset -c 0`, the client under `taskset -c 1`"
		if cfg.pin {
			otherName = "**unpinned**: servers and client free to run on both CPUs"
		}
		w("\nSame test, 32 connections, %s:\n\n", otherName)
		pt := harness.Table{Head: []string{"server", "conns", "lookups/s", "(min–max)", "p50 µs", "p99 µs", "p99.9 µs"}}
		for _, s := range l.other {
			ps := make([]float64, len(s.runs))
			for i, x := range s.runs {
				ps[i] = x.PerSec
			}
			lo, hi := harness.MinMax(ps)
			pt.Add(s.server, "32", harness.Int(int64(harness.Median(ps))), harness.Int(int64(lo))+"–"+harness.Int(int64(hi)),
				us(s.med(func(x lookupStat) float64 { return float64(x.P50) })),
				us(s.med(func(x lookupStat) float64 { return float64(x.P99) })),
				us(s.med(func(x lookupStat) float64 { return float64(x.P999) })))
		}
		b.WriteString(pt.String())
		spread := func(s *series) float64 {
			ps := make([]float64, len(s.runs))
			for i, x := range s.runs {
				ps[i] = x.PerSec
			}
			lo, hi := harness.MinMax(ps)
			if m := harness.Median(ps); m > 0 {
				return (hi - lo) / m
			}
			return 0
		}
		var main *series
		for _, s := range l.rows {
			if s.conns == 32 && s.server == "mailtls serve" && s.proto == "socketmap" && s.keys == commonKeys {
				main = s
			}
		}
		if main != nil {
			pinned, unpinned := main, l.other[0]
			if !cfg.pin {
				pinned, unpinned = l.other[0], main
			}
			ps := func(s *series) string {
				return harness.Int(int64(s.med(func(x lookupStat) float64 { return x.PerSec })))
			}
			p99 := func(s *series) string { return us(s.med(func(x lookupStat) float64 { return float64(x.P99) })) }
			w("\nCPU placement. On two CPUs the load client needs about as much CPU as the server. Unpinned, both compete for\n")
			w("both CPUs and a request can wait behind the other side; pinned, each has a CPU to itself. The main table uses\n")
			w("the placement that gave the more repeatable figures when this was set up (two quiet runs on 2026-11-28: spreads\n")
			w("of 6%% and 9%% pinned, 8%% and 33%% unpinned); on a real host Postfix and mailtls share the CPUs, which is closer to unpinned.\n")
			w("In this run mailtls at 32 connections did %s lookups/s with p99 %s µs pinned and %s lookups/s with p99 %s µs\n",
				ps(pinned), p99(pinned), ps(unpinned), p99(unpinned))
			w("unpinned; the spread (max−min)/median of its runs was %.0f%% pinned and %.0f%% unpinned.\n", 100*spread(pinned), 100*spread(unpinned))
		}
	}
	w("\n")
}

func (r *report) ingestSection(b *strings.Builder) {
	in := r.ingest
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 2. Log ingestion\n\n")
	w("Input: `mailtls-bench gen-log --lines N --days 7 --seed 1 > log-N.log` (synthetic Postfix log, RFC 3339 time stamps,\n")
	w("~20%% delivery lines, ~13%% TLS lines), cached in the work directory; every tool reads the same file from the page cache.\n")
	w("Each timed run starts after `sync`, so that no tool pays for the disk writes of the one before.\n\n")
	w("- `mailtls --db ingest.db import log-N.log` into a **fresh** database each run (parse, correlate TLS, store).\n")
	w("- `pflogsumm log-N.log > /dev/null` (pflogsumm %s, Perl).\n", in.versions["pflogsumm"])
	w("- `prometheus-postfix-exporter --postfix.logfile_path=F` (%s). It tails F from its end, so it is started on an\n", in.versions["prometheus-postfix-exporter"])
	w("  empty F; the log is then appended to F followed by one sentinel line, and `/metrics` is polled every 50 ms until\n")
	w("  the sentinel is counted. Time = from the start of the append to that scrape; RSS = the exporter's VmHWM.\n")
	w("- `grep -c status= log-N.log`: reading the file once, the I/O floor.\n\n")
	w("Wall time and peak RSS (ru_maxrss from wait4, as `/usr/bin/time -v` reports it) are medians of %d runs.\n\n", r.cfg.runs)
	t := harness.Table{Head: []string{"lines", "MB", "tool", "wall s", "(min–max)", "lines/s", "peak RSS MB", "output"}}
	for _, row := range in.rows {
		xs := make([]float64, len(row.runs))
		for i, x := range row.runs {
			xs[i] = x.wall.Seconds()
		}
		lo, hi := harness.MinMax(xs)
		wall := row.medWall()
		out := ""
		if len(row.runs) > 0 {
			out = row.runs[len(row.runs)-1].output
		}
		t.Add(harness.Int(int64(row.lines)), fmt.Sprintf("%.0f", float64(row.bytes)/1e6), row.tool, fmt.Sprintf("%.2f", wall),
			fmt.Sprintf("%.2f–%.2f", lo, hi), harness.Int(int64(float64(row.lines)/wall)), fmt.Sprintf("%.0f", row.medRSS()/1024), out)
	}
	b.WriteString(t.String())
	if len(in.restRSS) > 0 {
		w("\nmailtls at rest, importing an empty log, peaks at %.0f MB RSS (median of %d runs): most of it is the binary's resident\n", harness.Median(in.restRSS)/1024, len(in.restRSS))
		w("code and data, which grows with the binary, not with the log. The rest of the peak above is the import's own.\n")
	}
	w("\npflogsumm wall time ÷ mailtls import wall time (median of per-run ratios):\n\n")
	rt := harness.Table{Head: []string{"lines", "speed-up over pflogsumm"}}
	seen := map[int]bool{}
	for _, row := range in.rows {
		if seen[row.lines] {
			continue
		}
		seen[row.lines] = true
		rt.Add(harness.Int(int64(row.lines)), fmt.Sprintf("%.2f×", harness.Median(in.vsPflogsumm[row.lines])))
	}
	b.WriteString(rt.String())
	w("\nThe tools do different work: pflogsumm prints a summary and keeps per-message state; the exporter keeps counters\n")
	w("only; mailtls stores one indexed row per delivery (plus rollups) in SQLite, committed in batches.\n\n")
}

func (r *report) growthSection(b *strings.Builder) {
	g := r.growth
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 3. Growth\n\n### Overrides\n\n")
	w("Tables generated by `bench/cmd/benchrun` (a quarter each of exact domains, `.parent` wildcards, `[10.x.y.z]:25`\n")
	w("next-hops and `secure match=` entries) and loaded with the CLI, `mailtls --db overrides-N.db policy import overrides-N.txt`\n")
	w("(fresh database, after `sync`; %d runs up to %s entries, 1 run above). Then, %d times: `mailtls serve --db overrides-N.db` is started\n", r.cfg.runs, harness.Int(importRunsMax), r.cfg.runs)
	w("and polled with a new connection every 2 ms until an override is answered (\"start → first answer\", which includes\n")
	w("opening the database and building the snapshot), then loaded with\n")
	w("`mailtls-bench lookup --conns 32 --duration %s --keys KEYS` where KEYS hit an exact entry, a wildcard, a next-hop,\n", r.cfg.dur)
	w("a secure entry, the last exact entry, and miss once (e.g. `%s,oLAST.example`): first for 2 s right after the first\n", strings.TrimSuffix(g.keys, ",o0.example"))
	w("answer (\"just started\"), then, after a 3 s pause, for %s (the other columns), with the CPU placement of section 1.\n", r.cfg.dur)
	w("RSS is the daemon's VmRSS after the test.\n\n")
	t := harness.Table{Head: []string{"overrides", "policy import s", "import peak RSS MB", "start → first answer ms", "lookups/s just started", "lookups/s", "p50 µs", "p99 µs", "p99.9 µs", "daemon RSS MB"}}
	for _, o := range g.overrides {
		s := &o.lookups
		t.Add(harness.Int(int64(o.n)), fmt.Sprintf("%.2f", harness.Median(o.importWall)), fmt.Sprintf("%.0f", harness.Median(o.importRSS)/1024),
			fmt.Sprintf("%.0f", harness.Median(o.firstAns)),
			harness.Int(int64(harness.Median(o.early))),
			harness.Int(int64(s.med(func(x lookupStat) float64 { return x.PerSec }))),
			us(s.med(func(x lookupStat) float64 { return float64(x.P50) })),
			us(s.med(func(x lookupStat) float64 { return float64(x.P99) })),
			us(s.med(func(x lookupStat) float64 { return float64(x.P999) })),
			fmt.Sprintf("%.0f", harness.Median(o.rssKB)/1024))
	}
	b.WriteString(t.String())
	w("\n### Reports over stored deliveries\n\n")
	w("Databases filled by `go run ./bench/cmd/filldb -db rows-N.db -n N -days 90 -seed 1` (`bench/gen.Deliveries`:\n")
	w("Zipf-distributed domains, stored through `import`'s bulk writer, deliveries spread evenly over the 90 days before now),\n")
	w("cached in the work directory and refilled when older than %s.\n", r.cfg.refill)
	for _, f := range g.fills {
		w("- %s\n", f)
	}
	w("\nEach cell: `mailtls --db rows-N.db report --format json [--since 7d | --since 90d]`, warm page cache (one uncounted\n")
	w("warm-up pass), median of %d runs.\n\n", r.cfg.runs)
	t = harness.Table{Head: []string{"stored deliveries", "DB size GB", "window", "wall s", "(min–max)", "peak RSS MB", "result"}}
	for _, rr := range g.reports {
		lo, hi := harness.MinMax(rr.wall)
		t.Add(harness.Int(int64(rr.rows)), fmt.Sprintf("%.1f", float64(g.dbSizes[rr.rows])/1e9), rr.window,
			fmt.Sprintf("%.3f", harness.Median(rr.wall)), fmt.Sprintf("%.3f–%.3f", lo, hi), fmt.Sprintf("%.0f", harness.Median(rr.rss)/1024), rr.result)
	}
	b.WriteString(t.String())
	w("\n")
}

// httpCost is the cost of the HTTP listener for lookups: the same serve
// without --http and with it, scraped every second, measured in turn.
func (r *report) httpCost(b *strings.Builder) {
	l := r.lookup
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("\nCost of the HTTP listener (`%s`): a second `mailtls serve --socketmap ADDR --tcp '' --http ADDR` on the same\n", httpServerName)
	w("database and CPU, whose `/metrics` the bench scrapes every %s (%d scrapes succeeded), against the first one,\n", scrapeEvery, l.scrapes)
	w("started with `--http ''`; lookups/s with ÷ without, common keys, socketmap, same run (median of %d per-run ratios):\n\n", r.cfg.runs)
	t := harness.Table{Head: []string{"conns", "with --http ÷ without"}}
	for _, c := range r.cfg.conns {
		t.Add(fmt.Sprint(c), fmt.Sprintf("%.3f×", harness.Median(l.vsHTTP[c])))
	}
	b.WriteString(t.String())
	w("\nServer CPU time per lookup, with ÷ without (user+system from /proc/PID/stat around each test, so the\n")
	w("scrapes' own CPU counts against the listener; median of the per-run ratios, and the per-run range):\n\n")
	t = harness.Table{Head: []string{"conns", "CPU per lookup, with --http ÷ without", "(min–max)"}}
	for _, c := range r.cfg.conns {
		xs := l.cpuHTTP[c]
		if len(xs) == 0 {
			continue
		}
		lo, hi := slices.Min(xs), slices.Max(xs)
		t.Add(fmt.Sprint(c), fmt.Sprintf("%.3f×", harness.Median(xs)), fmt.Sprintf("%.3f–%.3f", lo, hi))
	}
	b.WriteString(t.String())
}
