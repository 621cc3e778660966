package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mailtls/mailtls/bench/internal/harness"
)

// importRunsMax: override tables larger than this are imported once (a
// 1M-line import takes tens of seconds); smaller ones cfg.runs times.
const importRunsMax = 100_000

type overrideRow struct {
	n          int
	importWall []float64 // seconds
	importRSS  []float64 // KiB
	firstAns   []float64 // milliseconds from exec to first correct answer
	rssKB      []float64 // daemon VmRSS after the load test
	early      []float64 // lookups/s in the 2 s right after the first answer
	lookups    series
}

type reportRow struct {
	rows   int
	window string
	args   []string
	wall   []float64
	rss    []float64
	result string
}

type growthResult struct {
	overrides []*overrideRow
	reports   []*reportRow
	fills     []string // notes on how each delivery database was made
	dbSizes   map[int]int64
	keys      string
}

// overrideLine is the i-th entry of a generated override table: a mix of
// exact domains, .parent wildcards, bracketed next-hops and secure+match.
func overrideLine(i int) string {
	switch i % 4 {
	case 0:
		return fmt.Sprintf("o%d.example encrypt", i)
	case 1:
		return fmt.Sprintf(".w%d.example verify match=hostname:nexthop", i)
	case 2:
		return fmt.Sprintf("[10.%d.%d.%d]:25 encrypt protocols=>=TLSv1.2", i>>16&255, i>>8&255, i&255)
	default:
		return fmt.Sprintf("s%d.example.net secure match=.example.net", i)
	}
}

// growthKeys hit each kind of entry once (first and last entries of the
// table) and miss once.
func growthKeys(n int) (keys string, want map[string]string) {
	last := n - 1 - (n-1)%4 // largest index that is an exact domain
	want = map[string]string{
		"o0.example":                     "OK encrypt",
		"a.b.w1.example":                 "OK verify match=hostname:nexthop",
		"[10.0.0.2]:25":                  "OK encrypt protocols=>=TLSv1.2",
		"s3.example.net":                 "OK secure match=.example.net",
		"miss.example":                   "OK may",
		fmt.Sprintf("o%d.example", last): "OK encrypt",
	}
	ks := []string{"o0.example", "a.b.w1.example", "[10.0.0.2]:25", "s3.example.net", "miss.example", fmt.Sprintf("o%d.example", last)}
	return strings.Join(ks, ","), want
}

func writeTable(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	for i := 0; i < n; i++ {
		bw.WriteString(overrideLine(i))
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func rmDB(db string) {
	for _, s := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(db + s)
	}
}

func runGrowth(ctx context.Context, cfg config) *growthResult {
	res := &growthResult{dbSizes: map[int]int64{}}
	dir := filepath.Join(cfg.dir, "growth")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fatalf("%v", err)
	}
	for _, n := range cfg.overrides {
		if n < 4 {
			fatalf("BENCH_OVERRIDES: %d is too small (at least 4)", n)
		}
		res.overrides = append(res.overrides, growthOverrides(cfg, dir, n))
	}
	k, _ := growthKeys(4)
	res.keys = k
	for _, n := range cfg.rows {
		res.reports = append(res.reports, growthReports(ctx, cfg, n, res)...)
	}
	return res
}

func growthOverrides(cfg config, dir string, n int) *overrideRow {
	row := &overrideRow{n: n}
	tbl := filepath.Join(dir, fmt.Sprintf("overrides-%d.txt", n))
	if _, err := os.Stat(tbl); err != nil {
		if err := writeTable(tbl, n); err != nil {
			fatalf("%v", err)
		}
	}
	db := filepath.Join(dir, fmt.Sprintf("overrides-%d.db", n))
	runs := cfg.runs
	if n > importRunsMax {
		runs = 1
	}
	for i := 0; i < runs; i++ {
		rmDB(db)
		settle() // as for ingestion: the run does not pay for earlier disk writes
		r, err := harness.Run(30*time.Minute, true, cfg.bin, "--db", db, "policy", "import", tbl)
		if err != nil {
			fatalf("policy import: %v", err)
		}
		row.importWall = append(row.importWall, r.Wall.Seconds())
		row.importRSS = append(row.importRSS, float64(r.MaxRSS))
		logf("growth: policy import of %d overrides %.2fs", n, r.Wall.Seconds())
	}
	keys, want := growthKeys(n)
	row.lookups = series{server: "mailtls serve", proto: "socketmap", keys: keys, conns: 32}
	for i := 0; i < cfg.runs; i++ {
		port := harness.MustFreePort()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		t0 := time.Now()
		p, err := harness.Start(cfg.logs, "serve-growth", cfg.bin, "serve", "--db", db, "--socketmap", addr, "--tcp", "", "--http", "", "--sources", "override", "--log-level", "warn")
		if err != nil {
			fatalf("%v", err)
		}
		if err := firstAnswer(addr, "o0.example", want["o0.example"], p, 5*time.Minute); err != nil {
			fatalf("growth: %v", err)
		}
		row.firstAns = append(row.firstAns, float64(time.Since(t0).Microseconds())/1000)
		for k, w := range want {
			if got := queryOnce(addr, k); got != w {
				fatalf("growth: %d overrides: lookup %s = %q, want %q", n, k, got, w)
			}
		}
		// Right after start, then settled: a big table leaves the garbage
		// of loading it to be collected in the first seconds.
		early, err := benchLookupFor(cfg, 2*time.Second, addr, 32, keys)
		if err != nil {
			fatalf("growth: %v", err)
		}
		row.early = append(row.early, early.PerSec)
		time.Sleep(3 * time.Second)
		st, err := benchLookup(cfg, cfg.pin, "socketmap", addr, 32, keys)
		if err != nil {
			fatalf("growth: %v", err)
		}
		row.lookups.runs = append(row.lookups.runs, st)
		row.rssKB = append(row.rssKB, float64(harness.ProcStatus(p.Pid(), "VmRSS")))
		logf("growth: %d overrides: first answer %.0f ms, %.0f lookups/s, p99 %dus, RSS %d MB", n, row.firstAns[i], st.PerSec, st.P99, int64(row.rssKB[i])/1024)
		_ = p.Stop(10 * time.Second)
	}
	return row
}

// firstAnswer polls addr with fresh connections until key gets want.
func firstAnswer(addr, key, want string, p *harness.Proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("%s exited (see %s)", p.Name, p.LogPath)
		}
		if got := queryOnce(addr, key); got == want {
			return nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("%w: no answer %q for %s from %s", harness.ErrTimeout, want, key, addr)
}

func queryOnce(addr, key string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := harness.SocketmapQuery(c, bufio.NewReader(c), "tlspolicy", key)
	if err != nil {
		return ""
	}
	return got
}

func growthReports(_ context.Context, cfg config, n int, res *growthResult) []*reportRow {
	db := filepath.Join(cfg.dir, fmt.Sprintf("rows-%d.db", n))
	marker := db + ".filled"
	fresh := false
	if b, err := os.ReadFile(marker); err == nil {
		if ts, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64); err == nil && time.Since(time.Unix(ts, 0)) < cfg.refill {
			if _, err := os.Stat(db); err == nil {
				fresh = true
				res.fills = append(res.fills, fmt.Sprintf("%s rows: cached database filled %s (%s)", harness.Int(int64(n)),
					time.Unix(ts, 0).UTC().Format("2006-01-02 15:04 MST"), strings.TrimSpace(strings.Join(strings.Fields(string(b))[1:], " "))))
			}
		}
	}
	if !fresh {
		if cfg.filldb == "" {
			fatalf("BENCH_FILLDB is not set (bench/run.sh builds bench/cmd/filldb)")
		}
		rmDB(db)
		_ = os.Remove(marker)
		logf("growth: filling %d deliveries (cached afterwards in %s)", n, db)
		r, err := harness.Run(6*time.Hour, true, cfg.filldb, "-db", db, "-n", strconv.Itoa(n), "-days", "90", "-seed", "1")
		if err != nil {
			fatalf("filldb: %v", err)
		}
		note := fmt.Sprintf("filldb in %.0f s", r.Wall.Seconds())
		if err := os.WriteFile(marker, []byte(fmt.Sprintf("%d %s\n", time.Now().Unix(), note)), 0o644); err != nil {
			fatalf("%v", err)
		}
		res.fills = append(res.fills, fmt.Sprintf("%s rows: filled in this run (%s)", harness.Int(int64(n)), note))
	}
	if fi, err := os.Stat(db); err == nil {
		res.dbSizes[n] = fi.Size()
	}
	return timeReports(cfg, "growth", db, n, []reportWindow{
		{"default (7d)", nil},
		{"--since 7d", []string{"--since", "7d"}},
		{"--since 90d", []string{"--since", "90d"}},
	})
}

// reportWindow is a report's arguments and how the tables name them.
type reportWindow struct {
	name string
	args []string
}

// timeReports times `mailtls report` over db (n stored deliveries) with
// each window's arguments: one warm-up pass (page cache), which gives the
// result column, then cfg.runs counted passes. label prefixes the log.
func timeReports(cfg config, label, db string, n int, windows []reportWindow) []*reportRow {
	var rows []*reportRow
	for _, w := range windows {
		rows = append(rows, &reportRow{rows: n, window: w.name, args: w.args})
	}
	for run := -1; run < cfg.runs; run++ {
		for _, rr := range rows {
			argv := append([]string{cfg.bin, "--db", db, "report", "--format", "json"}, rr.args...)
			r, err := harness.Run(time.Hour, false, argv...)
			if err != nil {
				fatalf("report: %v", err)
			}
			if run < 0 {
				rr.result = summarizeReport(r.Stdout)
				continue
			}
			rr.wall = append(rr.wall, r.Wall.Seconds())
			rr.rss = append(rr.rss, float64(r.MaxRSS))
			logf("%s: report %s over %d rows: %.3fs", label, rr.window, n, r.Wall.Seconds())
		}
	}
	return rows
}

func summarizeReport(b []byte) string {
	var m struct {
		Deliveries int64   `json:"deliveries"`
		Coverage   float64 `json:"coverage"`
		Domains    int64   `json:"domains"`
		Rows       []struct {
			Key  string `json:"key"`
			Sent int64  `json:"deliveries"`
		} `json:"rows"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(b), &m); err != nil {
		return "unparsed output"
	}
	if m.Rows != nil { // --by: the rows
		var parts []string
		for _, r := range m.Rows {
			parts = append(parts, fmt.Sprintf("%s: %s sent", r.Key, harness.Int(r.Sent)))
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprintf("%s sent, coverage %.4f, %s domains", harness.Int(m.Deliveries), m.Coverage, harness.Int(m.Domains))
}
