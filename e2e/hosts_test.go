//go:build linux

package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/bench/gen"
	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/internal/servetest"
)

// fleetCLI runs the real binary against one database.
type fleetCLI struct {
	t   *testing.T
	bin string
	db  string
}

func (f fleetCLI) run(args ...string) (stdout, stderr string, err error) {
	f.t.Helper()
	cmd := exec.Command(f.bin, append(args, "--db", f.db)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

func (f fleetCLI) ok(args ...string) string {
	f.t.Helper()
	out, errs, err := f.run(args...)
	if err != nil {
		f.t.Fatalf("mailtls %s: %v: %s", strings.Join(args, " "), err, errs)
	}
	return out
}

// summaryOf is `report --format json` (the fields used here).
type summaryOf struct {
	Deliveries, Encrypted, Plaintext int64
}

func (f fleetCLI) summary(args ...string) summaryOf {
	f.t.Helper()
	var s summaryOf
	if err := json.Unmarshal([]byte(f.ok(append([]string{"report", "--format", "json"}, args...)...)), &s); err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f fleetCLI) byHost(args ...string) map[string]summaryOf {
	f.t.Helper()
	var doc struct {
		Rows []struct {
			Key                              string
			Deliveries, Encrypted, Plaintext int64
		}
	}
	if err := json.Unmarshal([]byte(f.ok(append([]string{"report", "--by", "host", "--format", "json"}, args...)...)), &doc); err != nil {
		f.t.Fatal(err)
	}
	out := map[string]summaryOf{}
	for _, r := range doc.Rows {
		out[r.Key] = summaryOf{r.Deliveries, r.Encrypted, r.Plaintext}
	}
	return out
}

type statusOf struct {
	Hosts []struct {
		Name       string
		Deliveries int64
		LastCommit string `json:"last_commit"`
		Stale      bool
	}
	Followers []struct {
		Host, Source string
		Updated      time.Time
		Behind       int64 `json:"behind_bytes"`
	}
}

func (f fleetCLI) status(args ...string) statusOf {
	f.t.Helper()
	var s statusOf
	if err := json.Unmarshal([]byte(f.ok(append([]string{"status", "--format", "json"}, args...)...)), &s); err != nil {
		f.t.Fatal(err)
	}
	return s
}

// sentIn counts the sent deliveries the generator wrote.
func sentIn(truth gen.Truth) int64 {
	var n int64
	for _, d := range truth.Deliveries {
		if d.Status == delivery.Sent {
			n++
		}
	}
	return n
}

func genLog(t *testing.T, path string, seed uint64, lines int) gen.Truth {
	t.Helper()
	var buf bytes.Buffer
	truth, err := gen.Log(&buf, gen.LogConfig{Seed: seed, Lines: lines,
		Start: time.Now().Add(-50 * time.Hour).UTC().Truncate(time.Second), Duration: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return truth
}

// TestFleetHostsImport: two fleet hosts importing the same log lines into
// one database count twice, and report --by host splits them exactly;
// the same host importing them again adds nothing.
func TestFleetHostsImport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := fleetCLI{t: t, bin: mailtlsBin(t), db: filepath.Join(dir, "fleet.db")}
	logPath := filepath.Join(dir, "mail.log")
	truth := genLog(t, logPath, 17, 6000)
	sent := sentIn(truth)
	if sent < 100 {
		t.Fatalf("the generator wrote %d sent deliveries", sent)
	}
	f.ok("import", "--quiet", "--config", "/dev/null", "--host", "mx-a", logPath)
	f.ok("import", "--quiet", "--config", "/dev/null", "--host", "MX-B.example.net", logPath) // stored lowercased
	win := []string{"--since", "7d"}
	one := f.summary(append(win, "--host", "mx-a")...)
	if one.Deliveries != sent {
		t.Fatalf("report --host mx-a: %d sent deliveries, the generator wrote %d", one.Deliveries, sent)
	}
	fleet := f.summary(win...)
	if fleet.Deliveries != 2*sent || fleet.Encrypted != 2*one.Encrypted || fleet.Plaintext != 2*one.Plaintext {
		t.Fatalf("fleet report %+v, want twice one host's %+v", fleet, one)
	}
	split := f.byHost(win...)
	if len(split) != 2 || split["mx-a"] != one || split["mx-b.example.net"] != one {
		t.Fatalf("report --by host = %+v, want mx-a and mx-b.example.net with %+v each", split, one)
	}
	// Whole days from the rollups, the partial ones from raw rows: the
	// split still sums to the fleet.
	part := []string{"--since", "30h", "--until", "5h"}
	ps, pf := f.byHost(part...), f.summary(part...)
	if ps["mx-a"].Deliveries+ps["mx-b.example.net"].Deliveries != pf.Deliveries || ps["mx-a"] != ps["mx-b.example.net"] || pf.Deliveries == 0 {
		t.Fatalf("partial window: by host %+v, fleet %+v", ps, pf)
	}
	// Re-importing by the same host adds nothing.
	out := f.ok("import", "--config", "/dev/null", "--host", "mx-a", logPath)
	if !strings.Contains(out, " 0 deliveries stored") {
		t.Errorf("second import by mx-a: %q, want 0 deliveries stored", out)
	}
	if again := f.summary(win...); again != fleet {
		t.Errorf("after re-importing: %+v, want %+v", again, fleet)
	}
	// The listing carries the host, and --host selects it.
	rows := strings.Count(f.ok("deliveries", "--host", "mx-b.example.net"), `"host":"mx-b.example.net"`)
	if all := strings.Count(f.ok("deliveries"), "\n"); rows == 0 || 2*rows != all {
		t.Errorf("deliveries --host mx-b.example.net: %d rows with its host; %d rows in all, want twice as many", rows, all)
	}
	for _, bad := range [][]string{{"report", "--host", "bad host"}, {"import", "--config", "/dev/null", "--host", "-x", logPath}, {"deliveries", "--host", "a..b"}} {
		_, errs, err := f.run(bad...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "host name") {
			t.Errorf("mailtls %s: %v, stderr %q; want exit 2 and a one-line error about the host name", strings.Join(bad, " "), err, errs)
		}
	}
}

// follower is a `mailtls follow` process.
type followProc struct {
	cmd  *exec.Cmd
	done chan error
	log  *servetest.SyncBuffer
}

func (f fleetCLI) follow(host, logPath string) *followProc {
	f.t.Helper()
	p := &followProc{log: &servetest.SyncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(f.bin, "follow", "--db", f.db, "--log", logPath, "--host", host, "--poll", "50ms", "--config", "/dev/null", "--http", "")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	f.t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitHost polls status until host's follower has read the whole log and
// host has want deliveries.
func (f fleetCLI) waitHost(host string, want int64) statusOf {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		s := f.status() // not --host: that fails until the follower has registered its host
		var delivered int64 = -1
		for _, h := range s.Hosts {
			if h.Name == host {
				delivered = h.Deliveries
			}
		}
		caught := false
		for _, fl := range s.Followers {
			caught = caught || (fl.Host == host && fl.Behind == 0)
		}
		if delivered == want && caught {
			return s
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("host %s did not reach %d deliveries with its follower caught up within 60s: %+v", host, want, s)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}

// TestFleetHostsFollow: the checkpoint of host A does not move host B's;
// a second follower of the same log under the same host is refused, and
// the lock goes with a killed follower.
func TestFleetHostsFollow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := fleetCLI{t: t, bin: mailtlsBin(t), db: filepath.Join(dir, "fleet.db")}
	logPath := filepath.Join(dir, "mail.log")
	truth := genLog(t, logPath, 23, 3000)
	sent := sentIn(truth)

	a := f.follow("mx-a", logPath)
	f.waitHost("mx-a", int64(len(truth.Deliveries)))
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-a.done; err != nil {
		t.Fatalf("follow mx-a: %v\n%s", err, a.log.String())
	}
	before := f.status()
	if len(before.Hosts) != 1 || len(before.Followers) != 1 || before.Followers[0].Host != "mx-a" {
		t.Fatalf("status after mx-a followed alone: %+v, want one host and one follower, mx-a's", before)
	}

	b := f.follow("mx-b", logPath)
	f.waitHost("mx-b", int64(len(truth.Deliveries)))
	after := f.status()
	if len(after.Followers) != 2 {
		t.Fatalf("status with two hosts: %+v, want two followers", after)
	}
	for _, fl := range after.Followers {
		if fl.Host == "mx-a" && !fl.Updated.Equal(before.Followers[0].Updated) {
			t.Errorf("mx-a's checkpoint moved (updated %s, was %s) while only mx-b followed", fl.Updated, before.Followers[0].Updated)
		}
	}
	if got := f.summary("--since", "7d"); got.Deliveries != 2*sent {
		t.Errorf("fleet report: %d sent deliveries, want %d (both hosts)", got.Deliveries, 2*sent)
	}

	// A second follower as mx-b on the same log is refused at once.
	second := exec.Command(f.bin, "follow", "--db", f.db, "--log", logPath, "--host", "mx-b", "--config", "/dev/null", "--http", "")
	out, err := second.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "another follower is running as host mx-b") {
		t.Fatalf("second follower as mx-b: %v, output %q; want exit 1 naming the running follower", err, out)
	}

	// The lock dies with its process: after a SIGKILL a new follower starts.
	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-b.done
	c := f.follow("mx-b", logPath)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(c.log.String(), "mailtls follow started") {
		select {
		case err := <-c.done:
			t.Fatalf("follow mx-b after the SIGKILL exited: %v\n%s", err, c.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("follow mx-b after the SIGKILL did not start within 30s:\n%s", c.log.String())
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-c.done; err != nil {
		t.Fatalf("follow mx-b: %v\n%s", err, c.log.String())
	}
	if got := f.summary("--since", "7d"); got.Deliveries != 2*sent {
		t.Errorf("after the restart: %d sent deliveries, want %d", got.Deliveries, 2*sent)
	}
}
