package main

// The fleet section (BENCH_SECTIONS=postgres): mailtls on PostgreSQL, with
// the server on the same 2 cores, configured as pgtest.Durable says
// (crash-safe, sized for the machine). It measures
//   - import of a log of about 1M deliveries into PostgreSQL and into
//     SQLite, back to back, with the CPU time of mailtls and of the server;
//   - BENCH_PG_HOSTS followers (`mailtls follow --host hN`), each on its own
//     log that a writer here appends to at BENCH_PG_RATE deliveries/s for
//     BENCH_PG_FOLLOW: the lag of each, sampled every 100 ms from the
//     hour rollups, which a follower's batch updates in the transaction that
//     stores it;
//   - reports over BENCH_PG_ROWS stored deliveries (filldb, cached in the
//     cluster under BENCH_DIR/pg between runs);
//   - override propagation: `mailtls policy set` against the shared
//     database, and the time until a second daemon (`serve`) answers the
//     new policy over socketmap.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/bench/internal/harness"
	"github.com/mailtls/mailtls/internal/pgtest"
)

type pgImport struct {
	engine               string
	wall, client, server []float64 // seconds: wall, mailtls CPU, PostgreSQL CPU
	summary              string
	warmup               float64 // seconds: the run before, not counted
}

type pgFollowHost struct {
	name            string
	written, stored int64
	lags            []float64 // seconds, one per sample
	clientCPU       float64   // the follower's CPU seconds
	caughtUp        float64   // seconds after the writer's last line until all was stored
	rss             int64     // KiB, the follower's VmHWM
}

type pgResult struct {
	version     string
	settings    []string
	deliveries  int // in the import log
	lines       int
	imports     []*pgImport
	hosts       []*pgFollowHost
	rate        int
	followDur   time.Duration
	followCPU   float64 // server CPU seconds during the follow test
	followTotal int64
	rows        int
	fill        string
	reports     []*reportRow
	propSet     []float64 // ms from the end of `policy set` to the other daemon's answer
	propStart   []float64 // ms from the start of `policy set`
}

// pgCPU returns the CPU seconds used so far by the server: its processes
// and the children it has reaped (each client's backend).
func pgCPU(c *pgtest.Cluster) float64 {
	b, err := os.ReadFile(filepath.Join(c.SocketDir(), "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	pm, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	var ticks int64
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(st)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 15 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if pid != pm && ppid != pm {
			continue
		}
		for _, i := range []int{11, 12} {
			v, _ := strconv.ParseInt(f[i], 10, 64)
			ticks += v
		}
		if pid == pm {
			for _, i := range []int{13, 14} { // cutime, cstime: reaped backends
				v, _ := strconv.ParseInt(f[i], 10, 64)
				ticks += v
			}
		}
	}
	return float64(ticks) / 100
}

// recreate drops and creates database name.
func recreate(ctx context.Context, c *pgtest.Cluster, name string) {
	if err := c.Recreate(ctx, name); err != nil {
		fatalf("postgres: database %s: %v", name, err)
	}
}

func runPostgres(ctx context.Context, cfg config) *pgResult {
	res := &pgResult{settings: pgtest.Durable, rate: cfg.pgRate, followDur: cfg.pgFollow, rows: cfg.pgRows}
	dir := filepath.Join(cfg.dir, "pg")
	c, err := pgtest.StartClusterAt(dir, pgtest.Durable...)
	if err != nil {
		fatalf("postgres: %v", err)
	}
	defer func() {
		if err := c.Shutdown(); err != nil {
			logf("postgres: %v", err)
		}
	}()
	if rows, err := c.Query(ctx, "postgres", "SHOW server_version"); err == nil && len(rows) == 1 {
		res.version = rows[0][0]
	}
	parts := strings.Fields(env("BENCH_PG_PARTS", "import follow propagation reports"))
	for _, p := range parts {
		switch p {
		case "import":
			pgImports(ctx, cfg, c, res)
		case "follow":
			pgFollow(ctx, cfg, c, res)
		case "propagation":
			pgPropagation(ctx, cfg, c, res)
		case "reports":
			pgReports(ctx, cfg, c, res)
		default:
			fatalf("BENCH_PG_PARTS: unknown part %q; accepted: import follow propagation reports", p)
		}
	}
	return res
}

// pgImports imports the same log into a new PostgreSQL database and a new
// SQLite file, cfg.runs times each, alternating.
func pgImports(ctx context.Context, cfg config, c *pgtest.Cluster, res *pgResult) {
	path, lines, _ := logFile(cfg, cfg.pgImportLines)
	res.lines = lines
	if m := genLineRe.FindStringSubmatch(readMeta(path)); m != nil {
		res.deliveries, _ = strconv.Atoi(m[2])
	}
	pg := &pgImport{engine: "PostgreSQL " + res.version}
	lite := &pgImport{engine: "SQLite (modernc.org/sqlite)"}
	res.imports = []*pgImport{pg, lite}
	db := filepath.Join(cfg.dir, "pg-import.db")
	timeout := 30 * time.Minute
	// Run 0 is a warm-up, not counted, as for the reports: the first import
	// after the server had started was the slowest in four passes of six,
	// by 20-50%.
	for run := 0; run <= cfg.runs; run++ {
		recreate(ctx, c, "import")
		settle()
		s0 := pgCPU(c)
		r, err := harness.Run(timeout, false, cfg.bin, "--db", c.DSNFor("import"), "import", path)
		if err != nil {
			fatalf("import into PostgreSQL: %v", err)
		}
		server := pgCPU(c) - s0
		logf("postgres: import %d/%d into PostgreSQL %.2fs", run, cfg.runs, r.Wall.Seconds())
		rmDB(db)
		settle()
		rl, err := harness.Run(timeout, false, cfg.bin, "--db", db, "import", path)
		if err != nil {
			fatalf("import into SQLite: %v", err)
		}
		logf("postgres: import %d/%d into SQLite %.2fs", run, cfg.runs, rl.Wall.Seconds())
		if run == 0 {
			pg.warmup, lite.warmup = r.Wall.Seconds(), rl.Wall.Seconds()
			continue
		}
		pg.add(r, server)
		lite.add(rl, 0)
	}
	rmDB(db)
}

func (p *pgImport) add(r harness.Result, server float64) {
	p.wall = append(p.wall, r.Wall.Seconds())
	p.client = append(p.client, r.CPU.Seconds())
	p.server = append(p.server, server)
	p.summary = firstLine(r.Stdout)
}

func readMeta(path string) string {
	b, _ := os.ReadFile(path + ".meta")
	return string(b)
}

// followLog is one host's log, cut into lines, with the number of
// deliveries (lines with " status=") up to each line.
type followLog struct {
	lines [][]byte
	cum   []int64
}

func loadFollowLog(cfg config, seed, n int) *followLog {
	path := filepath.Join(cfg.dir, fmt.Sprintf("follow-%d-seed%d.log", n, seed))
	if _, err := os.Stat(path); err != nil {
		var out bytes.Buffer
		if _, err := harness.RunTo("", nil, 10*time.Minute, &out, cfg.tool, "gen-log", "--lines", strconv.Itoa(n), "--days", "1", "--seed", strconv.Itoa(seed)); err != nil {
			fatalf("gen-log: %v", err)
		}
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			fatalf("%v", err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		fatalf("%v", err)
	}
	fl := &followLog{}
	var k int64
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		line := b[:i+1]
		b = b[i+1:]
		if bytes.Contains(line, []byte(" status=")) {
			k++
		}
		fl.lines = append(fl.lines, line)
		fl.cum = append(fl.cum, k)
	}
	return fl
}

// mark is a writer's progress: deliveries written by a time.
type mark struct {
	at time.Time
	n  int64
}

// writeAtRate appends fl's lines from line i on to path so that rate
// deliveries a second are written, in steps of 50 ms, for d or until the
// lines run out, and returns its marks.
func writeAtRate(path string, fl *followLog, i, rate int, d time.Duration) ([]mark, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var base int64
	if i > 0 {
		base = fl.cum[i-1]
	}
	start := time.Now()
	var marks []mark
	var buf []byte
	for time.Since(start) < d && i < len(fl.lines) {
		time.Sleep(50 * time.Millisecond)
		want := base + int64(time.Since(start).Seconds()*float64(rate))
		buf = buf[:0]
		for i < len(fl.lines) && (i == 0 || fl.cum[i-1] < want) {
			buf = append(buf, fl.lines[i]...)
			i++
		}
		if len(buf) == 0 {
			continue
		}
		if _, err := f.Write(buf); err != nil {
			return marks, err
		}
		marks = append(marks, mark{time.Now(), fl.cum[i-1]})
	}
	return marks, nil
}

// warmLines is how many lines of each log are written before the timed
// writing starts, which waits until every follower has stored some of
// them: the followers are then up and registered.
const warmLines = 500

// lagAt is how long the first delivery not stored at t (stored of them)
// had been written; 0 when all written by t are stored.
func lagAt(marks []mark, t time.Time, stored int64) float64 {
	for _, m := range marks {
		if m.at.After(t) {
			break
		}
		if m.n > stored {
			return t.Sub(m.at).Seconds()
		}
	}
	return 0
}

// storedByHost reads each host's stored deliveries in database db from the
// hour rollups.
func storedByHost(ctx context.Context, c *pgtest.Cluster, db string) (map[string]int64, error) {
	rows, err := c.Query(ctx, db, `SELECT h.name,
		(coalesce((SELECT sum(n) FROM rollup_hour r WHERE r.host_id = h.id), 0) +
		coalesce((SELECT sum(n) FROM rollup_hour_internal r WHERE r.host_id = h.id), 0))::bigint
		FROM hosts h`)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, r := range rows {
		n, err := strconv.ParseInt(r[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("stored deliveries of %s: %q", r[0], r[1])
		}
		out[r[0]] = n
	}
	return out, nil
}

func pgFollow(ctx context.Context, cfg config, c *pgtest.Cluster, res *pgResult) {
	recreate(ctx, c, "fleet")
	dsn := c.DSNFor("fleet")
	dir := filepath.Join(cfg.dir, "pg-follow")
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fatalf("%v", err)
	}
	// 4.9 lines a delivery in gen-log's output, with room to spare.
	lines := int(float64(cfg.pgRate)*cfg.pgFollow.Seconds()*5.2) + 1000
	type host struct {
		fh   *pgFollowHost
		log  string
		fl   *followLog
		p    *harness.Proc
		mark []mark
	}
	var hosts []*host
	for i := 1; i <= cfg.pgHosts; i++ {
		h := &host{fh: &pgFollowHost{name: fmt.Sprintf("h%d", i)}, log: filepath.Join(dir, fmt.Sprintf("h%d.log", i)), fl: loadFollowLog(cfg, i, lines)}
		if err := os.WriteFile(h.log, nil, 0o644); err != nil {
			fatalf("%v", err)
		}
		if len(h.fl.lines) <= warmLines {
			fatalf("postgres: the follow log has only %d lines", len(h.fl.lines))
		}
		p, err := harness.Start(cfg.logs, "follow-"+h.fh.name, cfg.bin, "--db", dsn, "follow", "--host", h.fh.name, "--log", h.log, "--log-level", "warn")
		if err != nil {
			fatalf("%v", err)
		}
		h.p = p
		hosts = append(hosts, h)
		res.hosts = append(res.hosts, h.fh)
	}
	// The followers are up when each has stored the first lines of its log.
	for _, h := range hosts {
		if err := os.WriteFile(h.log, bytes.Join(h.fl.lines[:warmLines], nil), 0o644); err != nil {
			fatalf("%v", err)
		}
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		m, err := storedByHost(ctx, c, "fleet")
		if err != nil {
			fatalf("postgres: %v", err)
		}
		up := 0
		for _, h := range hosts {
			if m[h.fh.name] > 0 { // registered and committing (the correlator may hold the last few)
				up++
			}
		}
		if up == len(hosts) {
			break
		}
		if time.Now().After(deadline) {
			fatalf("postgres: followers have stored nothing of the first %d lines of their logs after a minute (see %s)", warmLines, cfg.logs)
		}
	}
	settle()
	s0 := pgCPU(c)
	var wg sync.WaitGroup
	var mu sync.Mutex
	writing := len(hosts)
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := writeAtRate(h.log, h.fl, warmLines, cfg.pgRate, cfg.pgFollow)
			if err != nil {
				fatalf("write %s: %v", h.log, err)
			}
			mu.Lock()
			h.mark = m
			writing--
			mu.Unlock()
		}()
	}
	// Sample while writing, then until every host has caught up (at most a
	// minute more); lags are computed from the samples and the writers'
	// marks afterwards.
	type sample struct {
		at     time.Time
		stored map[string]int64
	}
	var samples []sample
	var end time.Time
	for {
		time.Sleep(100 * time.Millisecond)
		t := time.Now()
		m, err := storedByHost(ctx, c, "fleet")
		if err != nil {
			fatalf("postgres: %v", err)
		}
		samples = append(samples, sample{t, m})
		mu.Lock()
		w := writing
		mu.Unlock()
		if w > 0 {
			continue
		}
		if end.IsZero() {
			end = t
		}
		done := true
		for _, h := range hosts {
			if len(h.mark) > 0 && m[h.fh.name] < h.mark[len(h.mark)-1].n {
				done = false
			}
		}
		if done || t.Sub(end) > time.Minute {
			break
		}
	}
	wg.Wait()
	res.followCPU = pgCPU(c) - s0
	for _, h := range hosts {
		if len(h.mark) == 0 {
			fatalf("postgres: the writer of %s wrote nothing", h.fh.name)
		}
		h.fh.written = h.mark[len(h.mark)-1].n
		res.followTotal += h.fh.written
		last := h.mark[len(h.mark)-1].at
		for _, sm := range samples {
			h.fh.lags = append(h.fh.lags, lagAt(h.mark, sm.at, sm.stored[h.fh.name]))
			if h.fh.caughtUp == 0 && sm.at.After(last) && sm.stored[h.fh.name] >= h.fh.written {
				h.fh.caughtUp = sm.at.Sub(last).Seconds()
			}
		}
		h.fh.clientCPU = cpuSeconds(h.p.Pid())
		h.fh.rss = harness.ProcStatus(h.p.Pid(), "VmHWM")
		if err := h.p.Stop(10 * time.Second); err != nil {
			logf("postgres: stop follower %s: %v", h.fh.name, err)
		}
	}
	m, _ := storedByHost(ctx, c, "fleet")
	for _, h := range hosts {
		h.fh.stored = m[h.fh.name]
	}
	logf("postgres: %d followers at %d deliveries/s each for %s", len(hosts), cfg.pgRate, cfg.pgFollow)
}

func pgPropagation(ctx context.Context, cfg config, c *pgtest.Cluster, res *pgResult) {
	dsn := c.DSNFor("fleet")
	var addrs []string
	for _, name := range []string{"a", "b"} {
		addr := fmt.Sprintf("127.0.0.1:%d", harness.MustFreePort())
		p, err := harness.Start(cfg.logs, "serve-"+name, cfg.bin, "--db", dsn, "serve", "--socketmap", addr, "--tcp", "", "--http", "", "--sources", "override", "--log-level", "warn")
		if err != nil {
			fatalf("%v", err)
		}
		defer func() { _ = p.Stop(10 * time.Second) }()
		if err := harness.WaitDial(addr, p, time.Minute); err != nil {
			fatalf("%v", err)
		}
		addrs = append(addrs, addr)
	}
	nc, err := net.DialTimeout("tcp", addrs[1], time.Second)
	if err != nil {
		fatalf("%v", err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	tag := time.Now().Unix()
	for i := 0; i < cfg.pgPropagations; i++ {
		key := fmt.Sprintf("prop%d-%d.example", i, tag)
		t0 := time.Now()
		if _, err := harness.Run(time.Minute, true, cfg.bin, "--db", dsn, "policy", "set", key, "encrypt"); err != nil {
			fatalf("policy set: %v", err)
		}
		t1 := time.Now()
		for {
			_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
			got, err := harness.SocketmapQuery(nc, br, "tlspolicy", key)
			if err != nil {
				fatalf("socketmap %s: %v", addrs[1], err)
			}
			if got == "OK encrypt" {
				break
			}
			if time.Since(t1) > 30*time.Second {
				fatalf("postgres: %s not answered as encrypt by the second daemon after 30 s (%q)", key, got)
			}
			time.Sleep(time.Millisecond)
		}
		t2 := time.Now()
		res.propSet = append(res.propSet, float64(t2.Sub(t1).Microseconds())/1000)
		res.propStart = append(res.propStart, float64(t2.Sub(t0).Microseconds())/1000)
		time.Sleep(200 * time.Millisecond) // spread the changes out, as an operator's are
	}
	logf("postgres: %d override propagations", cfg.pgPropagations)
}

// pgReports fills (once; cached in the cluster) a database of cfg.pgRows
// deliveries over 90 days and times the reports over it.
func pgReports(ctx context.Context, cfg config, c *pgtest.Cluster, res *pgResult) {
	name := fmt.Sprintf("rows%d", cfg.pgRows)
	dsn := c.DSNFor(name)
	var have int64 = -1
	if rows, err := c.Query(ctx, "postgres", "SELECT 1 FROM pg_database WHERE datname = $1", name); err == nil && len(rows) == 1 {
		if rows, err := c.Query(ctx, name, "SELECT count(*) FROM deliveries"); err == nil && len(rows) == 1 {
			have, _ = strconv.ParseInt(rows[0][0], 10, 64)
		}
	}
	if have == int64(cfg.pgRows) {
		res.fill = fmt.Sprintf("cached database (%s rows, filled by an earlier run)", harness.Int(have))
	} else {
		recreate(ctx, c, name)
		logf("postgres: filling %d deliveries", cfg.pgRows)
		r, err := harness.Run(6*time.Hour, true, cfg.filldb, "-db", dsn, "-n", strconv.Itoa(cfg.pgRows), "-days", "90", "-seed", "1")
		if err != nil {
			fatalf("filldb: %v", err)
		}
		res.fill = fmt.Sprintf("filled in this run by filldb in %.0f s (%s deliveries/s)", r.Wall.Seconds(), harness.Int(int64(float64(cfg.pgRows)/r.Wall.Seconds())))
	}
	res.reports = timeReports(cfg, "postgres", dsn, cfg.pgRows, []reportWindow{
		{"--since 7d", []string{"--since", "7d"}},
		{"--since 90d", []string{"--since", "90d"}},
		{"--since 90d --by host", []string{"--since", "90d", "--by", "host"}},
	})
}

func (r *report) postgresSection(b *strings.Builder) {
	p := r.pg
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 6. Fleet: PostgreSQL\n\n")
	w("PostgreSQL %s on the same 2 cores as mailtls, in a cluster of the suite's own (`internal/pgtest`,\n", p.version)
	w("on a unix socket), set up as a production server is: `%s`. Reproduce: `BENCH_SECTIONS=postgres make bench`.\n\n", strings.Join(p.settings, " "))

	if len(p.imports) > 0 {
		p.importSection(w, r.cfg.runs)
	}
	if len(p.hosts) > 0 {
		p.followSection(w)
	}
	if len(p.propSet) > 0 {
		p.propagationSection(w)
	}
	if len(p.reports) > 0 {
		p.reportsSection(w, r.cfg.runs)
	}
	if p.followTotal > 0 {
		p.capacitySection(w)
	}
}

// capacitySection works out, from the follow test's measured cost, how
// many hosts one PostgreSQL carries.
func (p *pgResult) capacitySection(w func(string, ...any)) {
	per := p.followCPU / float64(p.followTotal) // server CPU seconds a delivery
	var fol float64
	for _, h := range p.hosts {
		fol += h.clientCPU
	}
	folPer := fol / float64(p.followTotal)
	perCore := 1 / per
	here := 2 / (per + folPer) // this machine: server and followers share 2 cores
	w("### Capacity, on paper\n\n")
	w("From the follow test: the server spends %.0f µs of CPU a delivery as followers commit them (a batch of a few hundred\n", per*1e6)
	w("deliveries per commit at the default `--poll 250ms`: the insert, one rollup upsert per destination and day, the checkpoint,\n")
	w("the commit's WAL flush), and each follower %.0f µs. So:\n\n", folPer*1e6)
	w("- one PostgreSQL core carries about **%s deliveries/s**, %s hosts at %s deliveries/s each;\n",
		harness.Int(int64(perCore)), harness.Int(int64(perCore/float64(p.rate))), harness.Int(int64(p.rate)))
	w("- this 2-core machine, with the followers on it too, saturates near %s deliveries/s (%s such hosts); the test's %s/s used\n",
		harness.Int(int64(here)), harness.Int(int64(here/float64(p.rate))), harness.Int(int64(p.rate*len(p.hosts))))
	w("  %.0f%% of it;\n", 100*float64(p.rate*len(p.hosts))/here)
	w("- hosts do not contend with each other (rollup rows and checkpoints are keyed by host), so a server with more cores\n")
	w("  carries more, until the disk's WAL bandwidth or the delivery table's indexes outgrow memory: the key index takes\n")
	w("  random inserts, which slow once it no longer fits in `shared_buffers` (filldb, filling the 10M-row database\n")
	w("  with the import's COPY path, ran at about a third of the import's rate above).\n\n")
	w("Beyond that: a longer `--poll` (fewer, larger commits; the lag grows with it); deliveries partitioned by month, so that\n")
	w("each partition's indexes stay in memory and `prune` drops a partition instead of deleting rows; read replicas for\n")
	w("`report`, `deliveries` and the HTML page, which only read.\n\n")
}

func (p *pgResult) importSection(w func(string, ...any), runs int) {
	w("### Import\n\n")
	w("The same log of %s lines and %s deliveries (gen-log), imported with `mailtls import` into a new database, %d runs each, alternating,\n", harness.Int(int64(p.lines)), harness.Int(int64(p.deliveries)), runs)
	if len(p.imports) == 2 {
		w("after one run of each that is not counted, as for the reports (the first import after the server had started was the slowest by 20-50%% in four passes of six on 2026-12-04; here it took %s s into PostgreSQL, %s s into SQLite).\n",
			harness.F(p.imports[0].warmup, 2), harness.F(p.imports[1].warmup, 2))
	}
	w("mailtls CPU is user+system time of the import process; server CPU is that of every PostgreSQL process (the backends included).\n\n")
	t := harness.Table{Head: []string{"store", "wall s", "deliveries/s", "mailtls CPU s", "server CPU s", "server µs/delivery", "summary"}}
	for _, im := range p.imports {
		wall := harness.Median(im.wall)
		srv := harness.Median(im.server)
		per := "—"
		sv := "—"
		if srv > 0 {
			sv = harness.F(srv, 2)
			per = harness.F(srv*1e6/float64(p.deliveries), 1)
		}
		t.Add(im.engine, harness.F(wall, 2), harness.Int(int64(float64(p.deliveries)/wall)), harness.F(harness.Median(im.client), 2), sv, per, im.summary)
	}
	w("%s\n", t.String())
}

func (p *pgResult) followSection(w func(string, ...any)) {
	w("### Four hosts following at once\n\n")
	w("%d `mailtls follow --host hN` processes, one log each, which a writer appends to at %s deliveries/s each for %s\n", len(p.hosts), harness.Int(int64(p.rate)), p.followDur)
	w("(every 50 ms). The lag of a host at an instant is how long ago the oldest delivery not yet stored was written, sampled every\n")
	w("100 ms from the hour rollups (a follower's batch updates them in the transaction that stores it), until every host has caught up.\n\n")
	t := harness.Table{Head: []string{"host", "written", "stored", "lag p50 s", "lag p99 s", "lag max s", "follower CPU s", "follower peak RSS MB"}}
	for _, h := range p.hosts {
		p50, p99, mx := pctl(h.lags, 0.5), pctl(h.lags, 0.99), pctl(h.lags, 1)
		t.Add(h.name, harness.Int(h.written), harness.Int(h.stored), harness.F(p50, 2), harness.F(p99, 2), harness.F(mx, 2), harness.F(h.clientCPU, 1), harness.F(float64(h.rss)/1024, 0))
	}
	w("%s\n", t.String())
	if p.followTotal > 0 {
		w("Server CPU during the test: %.1f s for %s deliveries, %.1f µs a delivery in batches as a follower commits them.\n\n", p.followCPU, harness.Int(p.followTotal), p.followCPU*1e6/float64(p.followTotal))
	}

}

func (p *pgResult) propagationSection(w func(string, ...any)) {
	w("### Override propagation\n\n")
	w("Two daemons (`mailtls serve`, a and b, as on two hosts) on one database; `mailtls policy set KEY encrypt` %d times, 200 ms apart;\n", len(p.propSet))
	w("the time until daemon b answers `OK encrypt` for KEY over socketmap (polled every millisecond on one connection).\n\n")
	t := harness.Table{Head: []string{"measured from", "median ms", "max ms"}}
	t.Add("`policy set` exits (its change committed)", harness.F(harness.Median(p.propSet), 1), harness.F(pctl(p.propSet, 1), 1))
	t.Add("`policy set` starts", harness.F(harness.Median(p.propStart), 1), harness.F(pctl(p.propStart, 1), 1))
	w("%s\n", t.String())
}

func (p *pgResult) reportsSection(w func(string, ...any), runs int) {
	w("### Reports over %s stored deliveries\n\n", harness.Int(int64(p.rows)))
	w("Deliveries over 90 days (filldb: %s). Median of %d runs after one warm-up.\n\n", p.fill, runs)
	t := harness.Table{Head: []string{"report", "wall s", "peak RSS MB", "result"}}
	for _, rr := range p.reports {
		t.Add("`"+strings.Join(append([]string{"report"}, rr.args...), " ")+"`", harness.F(harness.Median(rr.wall), 3), harness.F(harness.Median(rr.rss)/1024, 0), rr.result)
	}
	w("%s\n", t.String())
}

// pctl returns the q-quantile of xs (q = 1: the maximum); 0 for none.
func pctl(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(q * float64(len(s)-1))
	return s[i]
}

// targets adds the fleet issue's targets.
func (p *pgResult) targets(add func(what string, measured, pass bool, figure string)) {
	if len(p.imports) == 2 && p.deliveries > 0 {
		pg := float64(p.deliveries) / harness.Median(p.imports[0].wall)
		lite := float64(p.deliveries) / harness.Median(p.imports[1].wall)
		add(fmt.Sprintf("import into PostgreSQL ≥ 100,000 deliveries/s (%s deliveries)", harness.Int(int64(p.deliveries))), true, pg >= 100_000,
			fmt.Sprintf("%s deliveries/s (SQLite, same run: %s/s)", harness.Int(int64(pg)), harness.Int(int64(lite))))
	}
	if len(p.hosts) > 0 {
		worst, all := 0.0, true
		for _, h := range p.hosts {
			worst = max(worst, pctl(h.lags, 1))
			all = all && h.stored == h.written
		}
		add(fmt.Sprintf("%d hosts following at %s deliveries/s each: all stored, lag < 2 s", len(p.hosts), harness.Int(int64(p.rate))), true, all && worst < 2,
			fmt.Sprintf("max lag %.2f s; all stored: %v", worst, all))
	}
	if len(p.propSet) > 0 {
		mx := pctl(p.propSet, 1)
		add("override on one host served by another host's daemon within 2 s", true, mx <= 2000,
			fmt.Sprintf("median %.0f ms, max %.0f ms", harness.Median(p.propSet), mx))
	}
	for _, rr := range p.reports {
		m := harness.Median(rr.wall)
		switch rr.window {
		case "--since 7d":
			add(fmt.Sprintf("PostgreSQL: report over %s rows, 7 days ≤ 1 s", harness.Int(int64(rr.rows))), true, m <= 1, fmt.Sprintf("%.3f s", m))
		case "--since 90d":
			add(fmt.Sprintf("PostgreSQL: report over %s rows, 90 days ≤ 3 s", harness.Int(int64(rr.rows))), true, m <= 3, fmt.Sprintf("%.3f s", m))
		}
	}
}
