package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mailtls/mailtls/bench/internal/harness"
)

// fleetHost is one `mailtls run` of a fleet host on PostgreSQL that
// follows a log a writer fills in chunks from a generated one, under a
// lookup client: the set-up and the end that the fleet (G1–G4) and
// netcut (G5) cases share.
type fleetHost struct {
	phase, host, dsn string
	dir              string
	genPath, logPath string
	all              [][]byte // the generated log's lines
	addr, cmd        string   // the socketmap listener; the command line, for RELIABILITY.md
	run              *harness.Proc
	client           *client
}

// startFleetHost sets the override known.example → encrypt through dsn,
// generates a log of lines (seed), starts run as host on an empty log
// and, once the override is served, the lookup client's baseline.
func startFleetHost(cfg config, phase, dir, host, dsn string, lines, seed int) *fleetHost {
	h := &fleetHost{phase: phase, host: host, dsn: dsn, dir: dir}
	if _, err := cfg.cli(time.Minute, "--db", dsn, "policy", "set", "known.example", "encrypt"); err != nil {
		fatalf("%s: %v", phase, err)
	}
	h.genPath = filepath.Join(dir, "gen.log")
	r, err := harness.Run(2*time.Minute, false, cfg.tool, "gen-log", "-lines", fmt.Sprint(lines), "-days", "2", "-seed", fmt.Sprint(seed))
	if err != nil {
		fatalf("%s: gen-log: %v", phase, err)
	}
	must(os.WriteFile(h.genPath, r.Stdout, 0o644))
	h.all = bytes.SplitAfter(r.Stdout, []byte("\n"))
	h.logPath = filepath.Join(dir, "mail.log")
	must(os.WriteFile(h.logPath, nil, 0o644))

	h.addr = fmt.Sprintf("127.0.0.1:%d", harness.MustFreePort())
	args := []string{"run", "--db", dsn, "--host", host, "--log", h.logPath, "--socketmap", h.addr, "--tcp", "", "--http", "",
		"--sources", "override", "--poll", "100ms", "--log-level", "info", "--config", "/dev/null"}
	h.cmd = shellJoin(append([]string{"mailtls"}, args...)...)
	h.run, err = harness.Start(cfg.logs, phase+"-run", cfg.as(append([]string{cfg.bin}, args...)...)...)
	must(err)
	if _, err := visible(h.addr, "known.example", "OK encrypt", 30*time.Second); err != nil {
		fatalf("%s: %v", phase, err)
	}
	h.client = newClient(h.addr, map[string][]string{"known.example": {"OK encrypt"}, "other.example": {"OK may"}}, time.Millisecond)
	h.client.phase("baseline")
	h.client.run(16)
	return h
}

// write appends the generated log to the followed one in chunks, one
// every 900 ms, or at once after stop is closed (nil: never); the
// channel gets the number of chunks written.
func (h *fleetHost) write(chunks int, stop <-chan struct{}) <-chan int {
	done := make(chan int, 1)
	go func() {
		f, err := os.OpenFile(h.logPath, os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			done <- 0
			return
		}
		defer f.Close()
		n, step := 0, max(1, len(h.all)/chunks)
		for i := 0; i < len(h.all); i += step {
			_, _ = f.Write(bytes.Join(h.all[i:min(i+step, len(h.all))], nil))
			n++
			select {
			case <-stop:
			case <-time.After(900 * time.Millisecond): // the writer's pace
			}
		}
		done <- n
	}()
	return done
}

// settle waits, for at most 2 minutes, until the follower has stored as
// many deliveries as an import of the whole log into a reference
// database, then ends the client's windows, and compares the two
// multisets: the deliveries expected, lost and duplicated, and the time
// from back to caught up.
func (h *fleetHost) settle(cfg config, back time.Time) (expected, lost, dup int, catchUp time.Duration) {
	refDB := filepath.Join(h.dir, "ref", "ref.db")
	cfg.mkdirFor(filepath.Dir(refDB))
	if _, err := cfg.cli(5*time.Minute, "--db", refDB, "import", "--quiet", "--host", h.host, h.genPath); err != nil {
		fatalf("%s: reference import: %v", h.phase, err)
	}
	want := deliveries(cfg, refDB)
	expected = total(want)
	deadline := time.Now().Add(2 * time.Minute)
	for total(deliveries(cfg, h.dsn)) < expected && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond) // polling interval
	}
	catchUp = time.Since(back)
	time.Sleep(2 * time.Second) // the "after" window
	h.client.halt()
	lost, dup = multisetDiff(want, deliveries(cfg, h.dsn))
	return expected, lost, dup, catchUp
}

// stop ends run with SIGTERM and says how it went.
func (h *fleetHost) stop() string {
	t0 := time.Now()
	if err := h.run.Stop(15 * time.Second); err != nil {
		return fmt.Sprintf("stop: %v", err)
	}
	return fmt.Sprintf("exited 0 %d ms after SIGTERM", time.Since(t0).Milliseconds())
}
