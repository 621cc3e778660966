package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/mailtls/mailtls/bench/internal/harness"
	"github.com/mailtls/mailtls/store"
)

// knownTable is the daemon tests' override table. The hammer's keys and
// the answers they must get follow it.
const knownTable = `known.example encrypt
.wild.example verify match=hostname:nexthop
[192.0.2.1]:25 encrypt protocols=>=TLSv1.2
forced.example.net secure match=.example.net
`

// knownExpect: key -> the only acceptable reply.
func knownExpect() map[string][]string {
	return map[string][]string{
		"known.example":      {"OK encrypt"},
		"KNOWN.Example":      {"OK encrypt"},
		"a.b.wild.example":   {"OK verify match=hostname:nexthop"},
		"wild.example":       {"OK may"},
		"[192.0.2.1]:25":     {"OK encrypt protocols=>=TLSv1.2"},
		"forced.example.net": {"OK secure match=.example.net"},
		"other.example.net":  {"OK may"},
		"plain.example":      {"OK may"},
	}
}

// caseResult is one row of the daemon table.
type caseResult struct {
	name      string
	what      string
	win       *window
	visible   string // time for a change to be answered, or why not
	cli       string // what the CLI said during the fault
	procAlive bool
}

type daemonResult struct {
	conns     int
	user      string
	cmd       string
	cases     []*caseResult
	exit      string
	logCounts map[string]int
	logSample []string
	bulk      string
}

const hammerConns = 128

func runDaemon(cfg config) *daemonResult {
	logf("daemon: setting up")
	dir := filepath.Join(cfg.dir, "daemon")
	cfg.mkdirFor(dir)
	dbDir := filepath.Join(dir, "db")
	cfg.mkdirFor(dbDir)
	db := filepath.Join(dbDir, "mailtls.db")
	tbl := filepath.Join(dir, "known.txt")
	must(os.WriteFile(tbl, []byte(knownTable), 0o644))
	if _, err := cfg.cli(time.Minute, "--db", db, "policy", "import", tbl); err != nil {
		fatalf("daemon: %v", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", harness.MustFreePort())
	argv := cfg.as(cfg.bin, "serve", "--db", db, "--socketmap", addr, "--tcp", "", "--http", "", "--sources", "override", "--log-level", "info")
	p, err := harness.Start(cfg.logs, "daemon-serve", argv...)
	if err != nil {
		fatalf("%v", err)
	}
	if err := harness.WaitDial(addr, p, 20*time.Second); err != nil {
		fatalf("daemon: %v", err)
	}
	res := &daemonResult{conns: hammerConns, user: cfg.user,
		cmd: shellJoin("mailtls", "serve", "--db", db, "--socketmap", addr, "--tcp", "", "--http", "", "--sources", "override", "--log-level", "info")}
	exp := knownExpect()
	for k, want := range exp {
		if d, err := visible(addr, k, want[0], 5*time.Second); err != nil {
			fatalf("daemon: initial answer: %v (after %s)", err, d)
		}
	}
	cl := newClient(addr, exp, 0)
	cl.phase("baseline")
	cl.run(hammerConns)
	add := func(name, what string, w *window) *caseResult {
		c := &caseResult{name: name, what: what, win: w}
		res.cases = append(res.cases, c)
		return c
	}
	// setProbe changes an override with the CLI and measures how long it
	// takes until the daemon answers it.
	setProbe := func(c *caseResult, key string) {
		r, err := cfg.cli(time.Minute, "--db", db, "policy", "set", key, "encrypt")
		if err != nil {
			c.visible = "policy set failed: " + harness.Tail(r.Stderr, 200)
			return
		}
		d, err := visible(addr, key, "OK encrypt", 20*time.Second)
		if err != nil {
			c.visible = err.Error()
			return
		}
		c.visible = fmt.Sprintf("%d ms", d.Milliseconds())
	}

	// Baseline.
	base := add("baseline", "no fault", cl.cur.Load())
	time.Sleep(5 * time.Second)
	setProbe(base, "probe-base.example")

	// (a1) A long write transaction: BEGIN IMMEDIATE + a write, held 5 s,
	// while the CLI tries to change an override.
	c := add("a1. locked by a write transaction", "another process holds `BEGIN IMMEDIATE` + an UPDATE for 5 s; `policy set` runs 1 s into it", cl.phase("a1"))
	c.cli, c.visible = lockCase(cfg, addr, db, "probe-a1.example", false)

	// (a2) An exclusive lock: readers are blocked too.
	c = add("a2. exclusive lock attempted", "another process tries `PRAGMA locking_mode=EXCLUSIVE` + `BEGIN EXCLUSIVE` (which would lock readers out too) and holds it 5 s if it gets it; `policy set` runs 1 s into it", cl.phase("a2"))
	c.cli, c.visible = lockCase(cfg, addr, db, "probe-a2.example", true)

	// (b1) The database files unreadable.
	c = add("b1. database files chmod 000", "`chmod 000` on mailtls.db, -wal, -shm for 5 s; then modes restored", cl.phase("b1"))
	files := []string{db, db + "-wal", db + "-shm"}
	modes := map[string]os.FileMode{}
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			modes[f] = fi.Mode().Perm()
			must(os.Chmod(f, 0))
		}
	}
	time.Sleep(time.Second)
	r, err := cfg.cli(time.Minute, "--db", db, "policy", "set", "probe-b1x.example", "encrypt")
	c.cli = cliOutcome(r, err)
	time.Sleep(4 * time.Second)
	for f, m := range modes {
		must(os.Chmod(f, m))
	}
	setProbe(c, "probe-b1.example")

	// (b2) The directory unreadable.
	c = add("b2. database directory chmod 000", "`chmod 000` on the directory holding the database for 5 s", cl.phase("b2"))
	must(os.Chmod(dbDir, 0))
	time.Sleep(time.Second)
	r, err = cfg.cli(time.Minute, "--db", db, "policy", "set", "probe-b2x.example", "encrypt")
	c.cli = cliOutcome(r, err)
	time.Sleep(4 * time.Second)
	must(os.Chmod(dbDir, 0o755))
	setProbe(c, "probe-b2.example")

	// (c) Deleted and recreated at the same path, 5 times.
	c = add("c. deleted and recreated ×5", "5 times: `rm` mailtls.db, -wal, -shm; 1 s later `policy import` of the same table plus a new key creates a new database at the same path", cl.phase("c"))
	var vis []float64
	var cliFails []string
	for i := 0; i < 5; i++ {
		for _, f := range files {
			_ = os.Remove(f)
		}
		time.Sleep(time.Second)
		rec := filepath.Join(dir, fmt.Sprintf("recreate%d.txt", i))
		key := fmt.Sprintf("probe-c%d.example", i)
		must(os.WriteFile(rec, []byte(knownTable+key+" encrypt\n"), 0o644))
		r, err := cfg.cli(time.Minute, "--db", db, "policy", "import", rec)
		if err != nil {
			cliFails = append(cliFails, cliOutcome(r, err))
			continue
		}
		d, err := visible(addr, key, "OK encrypt", 20*time.Second)
		if err != nil {
			cliFails = append(cliFails, err.Error())
			continue
		}
		vis = append(vis, float64(d.Milliseconds()))
	}
	c.cli = fmt.Sprintf("%d of 5 imports succeeded", 5-len(cliFails))
	if len(cliFails) > 0 {
		c.cli += ": " + strings.Join(cliFails, "; ")
	}
	if len(vis) > 0 {
		lo, hi := harness.MinMax(vis)
		c.visible = fmt.Sprintf("%.0f–%.0f ms", lo, hi)
	}
	time.Sleep(time.Second)

	// (d) 10,000 changes through the CLI.
	c = add("d. 10,000 changes by the CLI", fmt.Sprintf("`policy import` of a 10,000-line table, then %d sequential `policy set`", cfg.policySets), cl.phase("d"))
	bulk := filepath.Join(dir, "bulk.txt")
	var sb strings.Builder
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&sb, "bulk%d.example encrypt\n", i)
	}
	must(os.WriteFile(bulk, []byte(sb.String()), 0o644))
	t0 := time.Now()
	r, err = cfg.cli(5*time.Minute, "--db", db, "policy", "import", bulk)
	impWall := time.Since(t0)
	var notes []string
	if err != nil {
		notes = append(notes, "import failed: "+harness.Tail(r.Stderr, 200))
	} else if d, err := visible(addr, "bulk9999.example", "OK encrypt", 20*time.Second); err != nil {
		notes = append(notes, err.Error())
	} else {
		notes = append(notes, fmt.Sprintf("import %.2f s, visible %d ms after", impWall.Seconds(), d.Milliseconds()))
	}
	fails := 0
	t0 = time.Now()
	for i := 0; i < cfg.policySets; i++ {
		if _, err := cfg.cli(time.Minute, "--db", db, "policy", "set", fmt.Sprintf("loop%d.example", i), "encrypt"); err != nil {
			fails++
		}
	}
	loopWall := time.Since(t0)
	if d, err := visible(addr, fmt.Sprintf("loop%d.example", cfg.policySets-1), "OK encrypt", 20*time.Second); err != nil {
		notes = append(notes, err.Error())
	} else {
		notes = append(notes, fmt.Sprintf("%d `policy set` in %.1f s (%d failed), last visible %d ms after", cfg.policySets, loopWall.Seconds(), fails, d.Milliseconds()))
	}
	c.visible = strings.Join(notes, "; ")
	res.bulk = fmt.Sprintf("%d", 10000+cfg.policySets)

	c = add("after", "no fault", cl.phase("after"))
	time.Sleep(3 * time.Second)
	setProbe(c, "probe-after.example")
	cl.halt()
	alive := !p.Exited()
	for _, c := range res.cases {
		c.procAlive = alive
	}
	t0 = time.Now()
	if err := p.Stop(15 * time.Second); err != nil {
		res.exit = fmt.Sprintf("SIGTERM: %v", err)
	} else {
		res.exit = fmt.Sprintf("exited 0 %d ms after SIGTERM", time.Since(t0).Milliseconds())
	}
	if !alive {
		res.exit = "**the daemon died during the test** (see log); " + res.exit
	}
	res.logCounts, res.logSample = scanLog(p.LogPath)
	logf("daemon: done")
	return res
}

// lockCase locks the database from this process for 5 s and runs
// `policy set key encrypt` 1 s into it. It returns what the CLI did and
// how long after it finished the daemon answered the change.
func lockCase(cfg config, addr, db, key string, exclusive bool) (cliSaid, vis string) {
	release, err := store.LockFile(context.Background(), db, exclusive)
	if err != nil {
		return "not run", fmt.Sprintf("no change made: the lock could not be taken (%v); in WAL mode each open connection holds a shared lock on the database, so no other process can lock the daemon's reads out", err)
	}
	released := make(chan time.Time, 1)
	go func() {
		time.Sleep(5 * time.Second)
		_ = release()
		released <- time.Now()
	}()
	time.Sleep(time.Second)
	t0 := time.Now()
	r, err := cfg.cli(time.Minute, "--db", db, "policy", "set", key, "encrypt")
	cliWall := time.Since(t0)
	rel := <-released
	cliSaid = fmt.Sprintf("%s after %.1f s", cliOutcome(r, err), cliWall.Seconds())
	if err != nil {
		// Make the change now that the lock is gone, to time visibility.
		if _, err := cfg.cli(time.Minute, "--db", db, "policy", "set", key, "encrypt"); err != nil {
			return cliSaid, "retry failed: " + err.Error()
		}
	}
	d, err := visible(addr, key, "OK encrypt", 20*time.Second)
	if err != nil {
		return cliSaid, err.Error()
	}
	_ = rel
	return cliSaid, fmt.Sprintf("%d ms after `policy set` returned", d.Milliseconds())
}

func cliOutcome(r harness.Result, err error) string {
	if err == nil {
		return "succeeded"
	}
	code := -1
	if r.ExitErr != nil {
		if ee, ok := r.ExitErr.(interface{ ExitCode() int }); ok {
			code = ee.ExitCode()
		}
	}
	return fmt.Sprintf("failed (exit %d: %s)", code, oneLine(string(r.Stderr), 160))
}

func oneLine(s string, n int) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.ReplaceAll(s, "|", "\\|")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

var levelRe = regexp.MustCompile(`level=(\w+)`)
var msgRe = regexp.MustCompile(`msg="([^"]*)"|msg=(\S+)`)

// scanLog counts the daemon's log lines by level and returns a few
// distinct warning/error messages.
func scanLog(path string) (map[string]int, []string) {
	counts := map[string]int{}
	var sample []string
	seen := map[string]bool{}
	f, err := os.Open(path)
	if err != nil {
		return counts, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		m := levelRe.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		counts[m[1]]++
		if m[1] == "WARN" || m[1] == "ERROR" {
			mm := msgRe.FindStringSubmatch(l)
			msg := ""
			if mm != nil {
				msg = mm[1] + mm[2]
			}
			if !seen[msg] && len(sample) < 6 {
				seen[msg] = true
				sample = append(sample, oneLine(l, 300))
			}
		}
	}
	return counts, sample
}

func must(err error) {
	if err != nil {
		fatalf("%v", err)
	}
}
