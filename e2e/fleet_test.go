//go:build linux

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/bench/gen"
	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/internal/pgtest"
)

// truthCounts is what report --format json must say of a generated log:
// sent deliveries, and of them those the generator wrote with and
// without TLS.
func truthCounts(truth gen.Truth) summaryOf {
	var s summaryOf
	for _, d := range truth.Deliveries {
		if d.Status != delivery.Sent {
			continue
		}
		s.Deliveries++
		if d.TLS != nil && *d.TLS {
			s.Encrypted++
		} else if d.TLS != nil {
			s.Plaintext++
		}
	}
	return s
}

// fleetRun starts `mailtls run` as fleet host host on db, following
// logPath, with its socketmap on a free loopback port and no DNS.
func fleetRun(t *testing.T, db, host, logPath string) *mailtlsRun {
	t.Helper()
	m := newMailtlsRun(t, logPath)
	m.db = db
	m.args = []string{"run", "--db", db, "--host", host, "--log", logPath, "--socketmap", m.smap, "--tcp", "",
		"--sources", "override", "--poll", "50ms", "--reload-every", "30s", "--config", "/dev/null", "--http", ""}
	m.start()
	return m
}

// TestFleetPostgres: two `mailtls run` processes, hosts mx-a and mx-b, on
// one PostgreSQL, each following its own generated log. An override set
// from host A's side is answered by host B's daemon over postmap -q within
// 2 s (LISTEN/NOTIFY: the daemons poll only every 30 s here); the fleet
// report is the sum of the two logs' truth and report --by host splits it
// exactly.
func TestFleetPostgres(t *testing.T) {
	t.Parallel()
	pg := pgtest.New(t)
	dsn := pg.DSN()
	dir := t.TempDir()
	f := fleetCLI{t: t, bin: mailtlsBin(t), db: dsn}
	logA, logB := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	truthA, truthB := genLog(t, logA, 41, 5000), genLog(t, logB, 43, 7000)
	wantA, wantB := truthCounts(truthA), truthCounts(truthB)
	if wantA.Deliveries < 100 || wantB.Deliveries < 100 || wantA == wantB {
		t.Fatalf("the generator wrote %+v and %+v", wantA, wantB)
	}
	f.ok("status") // sets up the schema once, before two hosts start
	a := fleetRun(t, dsn, "mx-a", logA)
	b := fleetRun(t, dsn, "mx-b", logB)

	pf := StartPostfix(t, Config{})
	mapB := "socketmap:inet:" + b.smap + ":tlspolicy"
	if out, code := pf.Postmap("fleet.example", mapB); out != "may" || code != 0 {
		t.Fatalf("postmap -q fleet.example on host B before the change = %q (exit %d), want may", out, code)
	}
	f.ok("policy", "set", "fleet.example", "encrypt", "protocols=>=TLSv1.2")
	set := time.Now()
	// Every host's daemon reloads on its own NOTIFY (or poll): each must
	// answer the new policy within 2 s of policy set returning.
	for _, h := range []struct {
		name string
		m    string
		log  fmt.Stringer
	}{{"B", mapB, b.log}, {"A", "socketmap:inet:" + a.smap + ":tlspolicy", a.log}} {
		for {
			out, _ := pf.Postmap("fleet.example", h.m)
			if out == "encrypt protocols=>=TLSv1.2" {
				t.Logf("override set through the CLI answered by host %s's daemon %v after policy set returned", h.name, time.Since(set).Round(time.Millisecond))
				break
			}
			if time.Since(set) > 2*time.Second {
				t.Fatalf("host %s's daemon still answers %q 2 s after policy set returned:\n%s", h.name, out, h.log.String())
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
	}

	f.waitHost("mx-a", int64(len(truthA.Deliveries)))
	f.waitHost("mx-b", int64(len(truthB.Deliveries)))
	win := []string{"--since", "7d"}
	fleet := f.summary(win...)
	if want := (summaryOf{wantA.Deliveries + wantB.Deliveries, wantA.Encrypted + wantB.Encrypted, wantA.Plaintext + wantB.Plaintext}); fleet != want {
		t.Errorf("fleet report %+v, want the sum of the two logs' truth %+v", fleet, want)
	}
	split := f.byHost(win...)
	if len(split) != 2 || split["mx-a"] != wantA || split["mx-b"] != wantB {
		t.Errorf("report --by host = %+v, want mx-a %+v and mx-b %+v", split, wantA, wantB)
	}
	if one := f.summary(append(win, "--host", "mx-b")...); one != wantB {
		t.Errorf("report --host mx-b = %+v, want %+v", one, wantB)
	}
	a.stop()
	b.stop()
}

// smLookup asks a socketmap server for key over a new connection and
// returns the reply, e.g. "OK encrypt".
func smLookup(addr, key string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	q := "tlspolicy " + key
	if _, err := fmt.Fprintf(c, "%d:%s,", len(q), q); err != nil {
		return "", err
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	s := string(buf[:n])
	i := strings.IndexByte(s, ':')
	if i < 0 || !strings.HasSuffix(s, ",") {
		return "", fmt.Errorf("bad netstring %q", s)
	}
	if l, err := strconv.Atoi(s[:i]); err != nil || l != len(s)-i-2 {
		return "", fmt.Errorf("bad netstring %q", s)
	}
	return s[i+1 : len(s)-1], nil
}

// TestFleetDatabaseAway: PostgreSQL stopped under a running `mailtls
// run`. The daemon keeps answering from its snapshot (0 errors, 0 wrong
// answers); the follower stops committing and retries, status fails while
// the database is away, and once it is back the follower resumes from its
// checkpoint: the stored deliveries are exactly those of one import of
// the whole log. Stopped while the database is away, run exits 1 and says
// why.
func TestFleetDatabaseAway(t *testing.T) {
	t.Parallel()
	pg := pgtest.New(t)
	dsn := pg.DSN()
	dir := t.TempDir()
	bin := mailtlsBin(t)
	f := fleetCLI{t: t, bin: bin, db: dsn}
	var logBuf bytes.Buffer
	if _, err := gen.Log(&logBuf, gen.LogConfig{Seed: 51, Lines: 9000,
		Start: time.Now().Add(-50 * time.Hour).UTC().Truncate(time.Second), Duration: 48 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(logBuf.Bytes(), []byte("\n"))
	third := len(lines) / 3
	parts := [][]byte{bytes.Join(lines[:third], nil), bytes.Join(lines[third:2*third], nil), bytes.Join(lines[2*third:], nil)}
	logPath := filepath.Join(dir, "mail.log")
	appendLog := func(b []byte) {
		t.Helper()
		fh, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := fh.Close(); err != nil {
			t.Fatal(err)
		}
	}
	caughtUp := func() bool {
		s := f.status()
		for _, fl := range s.Followers {
			if fl.Host == "mx-a" && fl.Behind == 0 {
				return true
			}
		}
		return false
	}
	appendLog(parts[0])
	f.ok("policy", "set", "kept.example", "encrypt")
	m := fleetRun(t, dsn, "mx-a", logPath)
	waitFor(t, "follower caught up with the first third", 60*time.Second, caughtUp)

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	appendLog(parts[1])
	// The daemon answers from its snapshot while the database is away.
	lookups, errs, wrong := 0, 0, 0
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(m.log.String(), "follower stopped; restarting from the last checkpoint") {
		for _, q := range [][2]string{{"kept.example", "OK encrypt"}, {"other.example", "OK may"}} {
			got, err := smLookup(m.smap, q[0])
			lookups++
			switch {
			case err != nil:
				errs++
			case got != q[1]:
				wrong++
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the follower logged no storage failure within 30 s of stopping PostgreSQL:\n%s", m.log.String())
		}
	}
	if errs != 0 || wrong != 0 || lookups == 0 {
		t.Errorf("while the database was away: %d lookups, %d errors, %d wrong answers", lookups, errs, wrong)
	}
	t.Logf("while the database was away: %d lookups, %d errors, %d wrong answers", lookups, errs, wrong)
	_, serr, err := f.run("status")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || strings.Count(serr, "\n") != 1 || !strings.Contains(serr, "database unavailable") {
		t.Errorf("status while the database is away: %v, stderr %q; want exit 1 and one line saying the database is unavailable", err, serr)
	}

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	appendLog(parts[2])
	back := time.Now()
	waitFor(t, "follower caught up after PostgreSQL came back", 60*time.Second, caughtUp)
	t.Logf("caught up %v after PostgreSQL was started again", time.Since(back).Round(100*time.Millisecond))

	// The reference: one import of the whole log as the same host.
	ref := fleetCLI{t: t, bin: bin, db: filepath.Join(dir, "ref.db")}
	all := filepath.Join(dir, "all.log")
	if err := os.WriteFile(all, logBuf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ref.ok("import", "--quiet", "--config", "/dev/null", "--host", "mx-a", all)
	want, got := dump(t, bin, ref.db), dump(t, bin, dsn)
	lost, dup := diff(want, got)
	if len(lost) > 0 || len(dup) > 0 || len(want) == 0 {
		t.Fatalf("after the outage: %d stored, %d in one import; %d lost (e.g. %q), %d extra or twice (e.g. %q)",
			len(got), len(want), len(lost), first(lost), len(dup), first(dup))
	}

	// Stopped while the database is away: exit 1, saying so.
	failures := strings.Count(m.log.String(), "follower stopped; restarting")
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	appendLog(lines[0])
	waitFor(t, "a failed commit after the second stop", 30*time.Second, func() bool {
		return strings.Count(m.log.String(), "follower stopped; restarting") > failures
	})
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-m.done:
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(m.log.String(), "follower stopped while failing") {
			t.Errorf("run stopped while the database was away: %v; want exit 1 and a message saying the follower was failing:\n%s", err, m.log.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not exit within 10 s of SIGTERM")
	}
}

// TestFleetMigrateKilled: `mailtls migrate` from a host's SQLite file into
// PostgreSQL, killed with SIGKILL half-way through the deliveries and run
// again, ends with exactly the source's deliveries, overrides and report;
// a third run adds nothing.
func TestFleetMigrateKilled(t *testing.T) {
	t.Parallel()
	pg := pgtest.New(t)
	dir := t.TempDir()
	bin := mailtlsBin(t)
	src := fleetCLI{t: t, bin: bin, db: filepath.Join(dir, "host.db")}
	dst := fleetCLI{t: t, bin: bin, db: pg.DSN()}
	logPath := filepath.Join(dir, "mail.log")
	truth := genLog(t, logPath, 61, 150_000)
	src.ok("import", "--quiet", "--config", "/dev/null", "--host", "mx-old", logPath)
	src.ok("policy", "set", "example.com", "encrypt")
	src.ok("policy", "set", ".corp.example", "verify")
	src.ok("policy", "set", "example.com", "secure")

	migrate := exec.Command(bin, "migrate", "--from", src.db, "--to", dst.db)
	stderr, err := migrate.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate.Start(); err != nil {
		t.Fatal(err)
	}
	var seen bytes.Buffer
	buf := make([]byte, 4096)
	killed := false
	for !killed {
		n, err := stderr.Read(buf)
		seen.Write(buf[:n])
		for _, l := range strings.Split(seen.String(), "\n") {
			var done, total string
			if _, perr := fmt.Sscanf(l, "migrate: deliveries %s of %s", &done, &total); perr == nil && done != "0" && done != total {
				_ = migrate.Process.Signal(syscall.SIGKILL)
				killed = true
				break
			}
		}
		if err != nil {
			break
		}
	}
	werr := migrate.Wait()
	if !killed {
		t.Fatalf("migrate ended (%v) before it could be killed half-way; stderr:\n%s", werr, seen.String())
	}
	t.Logf("killed after: %s", strings.TrimSpace(seen.String()[strings.LastIndex(strings.TrimSpace(seen.String()), "\n")+1:]))
	if got := len(dump(t, bin, dst.db)); got == 0 {
		t.Logf("the killed run had committed no deliveries")
	}

	out := dst.ok("migrate", "--quiet", "--from", src.db, "--to", dst.db)
	if !strings.Contains(out, "already present") {
		t.Errorf("second migrate: %q", out)
	}
	want, got := dump(t, bin, src.db), dump(t, bin, dst.db)
	lost, dup := diff(want, got)
	if len(lost) > 0 || len(dup) > 0 || len(want) < len(truth.Deliveries)/2 {
		t.Fatalf("after a killed migrate and a second run: %d in the target, %d in the source; %d lost (e.g. %q), %d extra or twice (e.g. %q)",
			len(got), len(want), len(lost), first(lost), len(dup), first(dup))
	}
	if s, d := src.summary("--since", "7d"), dst.summary("--since", "7d"); s != d || s.Deliveries != sentIn(truth) {
		t.Errorf("report: source %+v, target %+v, truth %d sent", s, d, sentIn(truth))
	}
	if s, d := src.ok("policy", "list"), dst.ok("policy", "list"); s != d || !strings.Contains(d, "secure") {
		t.Errorf("policy list: source %q, target %q", s, d)
	}
	third := dst.ok("migrate", "--quiet", "--from", src.db, "--to", dst.db)
	if !strings.Contains(third, ": 0 overrides (0 conflicting), 0 history entries, 0 deliveries") {
		t.Errorf("third migrate added something: %q", third)
	}

	// A conflicting override in the target stops it, with a one-line error.
	dst.ok("policy", "set", "example.com", "dane")
	_, errs, err := dst.run("migrate", "--from", src.db, "--to", dst.db)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(errs, "--prefer") {
		t.Errorf("migrate onto a conflicting override: %v, stderr %q; want exit 2 naming --prefer", err, errs)
	}
	for _, bad := range [][]string{{"migrate", "--from", filepath.Join(dir, "none.db"), "--to", dst.db}, {"migrate", "--from", src.db, "--to", dst.db, "--prefer", "both"}, {"migrate", "--to", dst.db}} {
		_, errs, err := dst.run(bad...)
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || strings.Count(errs, "\n") != 1 {
			t.Errorf("mailtls %s: %v, stderr %q; want exit 2 and one line", strings.Join(bad, " "), err, errs)
		}
	}
}
