package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailtls/mailtls/bench/internal/harness"
	"github.com/mailtls/mailtls/internal/pgtest"
)

// The fleet phase: mailtls on PostgreSQL (a cluster of its own, started
// with pgtest as an unprivileged user, on a unix socket) while the server
// restarts, stops for 30 s, a second follower tries the same host name,
// and a migrate is killed half-way.

// fleetOutage is how long the server stays stopped in case G2.
const fleetOutage = 30 * time.Second

type fleetResult struct {
	cmd     string
	client  *client
	windows []*window
	// follower across G1 and G2: lost and duplicated deliveries against
	// one import of the same log
	expected, lost, dup int
	catchUp             time.Duration // from the server's start after G2 to the follower caught up
	exit                string        // how run ended
	second              string        // G3: what the second follower said
	secondOK            bool
	secondAfter         string // G3b: the same after G1 and G2
	secondAfterOK       bool
	migrate             string // G4: what happened
	migrateLost         int
	migrateDup          int
	migrateExpected     int
	migrateKilledAt     string
	failures            []string
}

func runFleet(cfg config) *fleetResult {
	res := &fleetResult{}
	dir := filepath.Join(cfg.dir, "fleet")
	cfg.mkdirFor(dir)
	pg, err := pgtest.StartCluster()
	if err != nil {
		fatalf("fleet: %v", err)
	}
	defer func() {
		if err := pg.Close(); err != nil {
			logf("fleet: %v", err)
		}
	}()
	dsn := pg.DSN()
	logf("fleet: PostgreSQL on %s", pg.SocketDir())
	h := startFleetHost(cfg, "fleet", dir, "fa", dsn, int(60_000*cfg.scale), 71)
	res.cmd, res.client = h.cmd, h.client
	// G3. A second follower under the same host name and log.
	res.second, res.secondOK = secondFollower(cfg, dsn, h.logPath)
	stopWriting := make(chan struct{})
	writer := h.write(50, stopWriting) // about 45 s

	time.Sleep(3 * time.Second) // the baseline window
	h.client.phase("G1. PostgreSQL restarted")
	if err := pg.Stop(); err != nil {
		fatalf("fleet: %v", err)
	}
	if err := pg.Start(); err != nil {
		fatalf("fleet: %v", err)
	}
	time.Sleep(5 * time.Second) // the window after the restart
	h.client.phase(fmt.Sprintf("G2. PostgreSQL stopped for %s", fleetOutage))
	if err := pg.Stop(); err != nil {
		fatalf("fleet: %v", err)
	}
	time.Sleep(fleetOutage) // the outage itself
	if err := pg.Start(); err != nil {
		fatalf("fleet: %v", err)
	}
	back := time.Now()
	h.client.phase("after")
	close(stopWriting)
	<-writer
	// Caught up: the stored deliveries reach the reference's count.
	res.expected, res.lost, res.dup, res.catchUp = h.settle(cfg, back)
	res.windows = h.client.all

	// G3b. The same after the restarts.
	res.secondAfter, res.secondAfterOK = secondFollower(cfg, dsn, h.logPath)
	res.exit = h.stop()

	// G4. A migrate killed half-way, run again.
	res.migrateCase(cfg, dir, h.genPath, dsn)
	logf("fleet: %d lost, %d duplicated of %d; migrate: %s", res.lost, res.dup, res.expected, res.migrate)
	return res
}

// secondFollower starts `mailtls follow` under run's host name and log and
// reports what it said and whether it was refused.
func secondFollower(cfg config, dsn, logPath string) (string, bool) {
	r, err := cfg.cli(30*time.Second, "--db", dsn, "follow", "--host", "fa", "--log", logPath, "--http", "", "--config", "/dev/null", "--log-level", "error")
	said := oneLine(string(r.Stderr), 200)
	if err != nil && !strings.Contains(err.Error(), harness.ErrTimeout.Error()) && strings.Contains(said, "another follower is running") {
		return said, true
	}
	if err != nil && strings.Contains(err.Error(), harness.ErrTimeout.Error()) {
		return "not refused: it ran until killed after 30 s", false
	}
	return fmt.Sprintf("not refused (%v): %s", err, said), false
}

// migrateCase imports the log into a SQLite file as host "old", starts
// `mailtls migrate` into PostgreSQL, kills it (SIGKILL) once it has
// copied some deliveries, runs it again and compares.
func (res *fleetResult) migrateCase(cfg config, dir, genPath, dsn string) {
	src := filepath.Join(dir, "old", "old.db")
	cfg.mkdirFor(filepath.Dir(src))
	if _, err := cfg.cli(5*time.Minute, "--db", src, "import", "--quiet", "--host", "old", genPath); err != nil {
		fatalf("fleet: import: %v", err)
	}
	p, err := harness.Start(cfg.logs, "fleet-migrate", cfg.as(cfg.bin, "migrate", "--from", src, "--to", dsn)...)
	must(err)
	deadline := time.Now().Add(2 * time.Minute)
	for !p.Exited() && time.Now().Before(deadline) {
		if l := lastProgress(p.LogPath); l != "" {
			var done, total string
			if _, err := fmt.Sscanf(l, "migrate: deliveries %s of %s", &done, &total); err == nil && done != "0" && done != total {
				p.Kill()
				res.migrateKilledAt = l
				break
			}
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	p.Kill()
	if res.migrateKilledAt == "" {
		res.migrate = "migrate ended before it could be killed half-way"
		res.failures = append(res.failures, res.migrate)
		return
	}
	if _, err := cfg.cli(5*time.Minute, "migrate", "--quiet", "--from", src, "--to", dsn); err != nil {
		res.migrate = "second run failed: " + oneLine(err.Error(), 200)
		res.failures = append(res.failures, res.migrate)
		return
	}
	want, got := deliveries(cfg, src), deliveries(cfg, dsn, "--host", "old")
	res.migrateExpected = total(want)
	res.migrateLost, res.migrateDup = multisetDiff(want, got)
	res.migrate = fmt.Sprintf("killed at %q, run again: %d lost, %d duplicated of %d", res.migrateKilledAt, res.migrateLost, res.migrateDup, res.migrateExpected)
}

// multisetDiff counts the rows of want missing from got, and those of got
// beyond want.
func multisetDiff(want, got map[string]int) (lost, extra int) {
	for k, n := range want {
		lost += max(0, n-got[k])
	}
	for k, g := range got {
		extra += max(0, g-want[k])
	}
	return lost, extra
}

// lastProgress returns the last complete "migrate: deliveries" line of a
// process log, or "".
func lastProgress(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	last := ""
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "migrate: deliveries ") {
			last = l
		}
	}
	return last
}

func (s *suite) fleetSummary(t *harness.Table, verdict func(bool, ...string) string) {
	f := s.fleet
	var errs, wrong, ok int64
	for _, w := range f.windows {
		ok += w.ok.Load()
		errs += w.errs.Load()
		wrong += w.wrong.Load()
	}
	t.Add("G1/G2. daemon on PostgreSQL restarted, then stopped 30 s: errors / wrong answers", "0 / 0",
		fmt.Sprintf("%s / %s of %s lookups", harness.Int(errs), harness.Int(wrong), harness.Int(ok+errs)),
		verdict(errs == 0 && wrong == 0 && ok > 0, fmt.Sprintf("fleet: %d lookup errors, %d wrong answers", errs, wrong)))
	t.Add("G1/G2. follower across both: lost / duplicated", "0 / 0", fmt.Sprintf("%d / %d of %s", f.lost, f.dup, harness.Int(int64(f.expected))),
		verdict(f.lost == 0 && f.dup == 0 && f.expected > 0, fmt.Sprintf("fleet: follower %d lost, %d duplicated", f.lost, f.dup)))
	t.Add("G3. second follower with the same host name", "refused", orDash(f.second), verdict(f.secondOK, "fleet: second follower: "+f.second))
	t.Add("G3b. the same after the server restarted", "refused", orDash(f.secondAfter), verdict(f.secondAfterOK, "fleet: second follower after the restart: "+f.secondAfter))
	t.Add("G4. killed migrate, run again: lost / duplicated", "0 / 0", fmt.Sprintf("%d / %d of %s", f.migrateLost, f.migrateDup, harness.Int(int64(f.migrateExpected))),
		verdict(f.migrateKilledAt != "" && f.migrateLost == 0 && f.migrateDup == 0 && f.migrateExpected > 0, "fleet: "+f.migrate))
	t.Add("fleet: run survives and stops cleanly", "exit 0", f.exit, verdict(strings.HasPrefix(f.exit, "exited 0"), "fleet: "+f.exit))
}

func (s *suite) fleetSection(b *strings.Builder) {
	f := s.fleet
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 5. Fleet: PostgreSQL restarted, stopped, a second follower, a killed migrate\n\n")
	w("A PostgreSQL cluster of the suite's own (initdb and pg_ctl as an unprivileged user, unix socket only,\n")
	w("internal/pgtest). Command: `%s`. 16 socketmap connections, one lookup per ms each,\n", f.cmd)
	w("check every answer (`known.example` must get `OK encrypt`, an override; `other.example` `OK may`), while a writer\n")
	w("appends a generated log of %s lines in 50 chunks over about 45 s. G1: `pg_ctl stop -m immediate` then start;\n", harness.Int(int64(60_000*s.cfg.scale)))
	w("G2: stopped for %s, then started. The stored deliveries are then compared, as a multiset of\n", fleetOutage)
	w("`deliveries --format jsonl` rows, with one `import --host fa` of the same log into SQLite.\n\n")
	t := harness.Table{Head: []string{"window", "s", "answered", "errors", "wrong", "p50 µs", "p99 µs", "max µs"}}
	for _, win := range f.windows {
		winRow(&t, []string{win.name}, win)
	}
	b.WriteString(t.String())
	w("\nFollower: %d lost, %d duplicated of %s; caught up %.1f s after the server was started again (it retries at 1, 2, 4, 8, 10 s).\n",
		f.lost, f.dup, harness.Int(int64(f.expected)), f.catchUp.Seconds())
	w("Run: %s.\n\n", f.exit)
	w("G3. `mailtls follow --host fa` on the same log while run follows it, before G1: %s\n\n", orDash(f.second))
	w("G3b. The same after G1 and G2: %s. (The lock is a session advisory lock, which a server restart ends;\n", orDash(f.secondAfter))
	w("the follower's process takes it again on a new session once the server answers, store/postgres_lock.go.)\n\n")
	w("G4. `mailtls migrate --from old.db --to DSN` (the same log imported as host old), SIGKILL once it reported\n")
	w("copied deliveries, then run again: %s.\n", f.migrate)
	for _, fl := range f.failures {
		w("\n- %s\n", fl)
	}
	for _, win := range f.windows {
		if len(win.samples) > 0 {
			w("\nFirst errors or wrong answers in %s:\n\n", win.name)
			for _, sm := range win.samples {
				w("- `%s`\n", sm)
			}
		}
	}
	w("\n")
}
