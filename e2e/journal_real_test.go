//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/store"
)

// realJournalTools returns journalctl and systemd-journal-remote, failing
// (not skipping) when either is missing: CI installs them (.ci/deps).
func realJournalTools(t *testing.T) (journalctl, remote string) {
	t.Helper()
	journalctl, err := exec.LookPath("journalctl")
	if err != nil {
		t.Fatal("journalctl not found (Debian package systemd): the real-journal test needs it")
	}
	for _, p := range []string{"/usr/lib/systemd/systemd-journal-remote", "/lib/systemd/systemd-journal-remote"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return journalctl, p
		}
	}
	if p, err := exec.LookPath("systemd-journal-remote"); err == nil {
		return journalctl, p
	}
	t.Fatal("systemd-journal-remote not found (Debian package systemd-journal-remote): the real-journal test needs it")
	return "", ""
}

// jrWriter writes journal entries, in journal export format, into real
// journal files with systemd-journal-remote (which keeps the _PID, _UID and
// _COMM it is given, as journald's own fields).
type jrWriter struct {
	t      *testing.T // for write; tryWrite may run on another goroutine
	remote string
	dir    string
	boot   string
	mono   int64
	real   int64
}

// entry is one journal entry's fields.
type entry map[string]string

// write appends entries to the journal file DIR/name (created when new).
func (w *jrWriter) write(name string, entries []entry) {
	w.t.Helper()
	if err := w.tryWrite(name, entries); err != nil {
		w.t.Fatal(err)
	}
}

func (w *jrWriter) tryWrite(name string, entries []entry) error {
	var b bytes.Buffer
	for _, e := range entries {
		w.mono += 1000
		w.real += 25_000
		fmt.Fprintf(&b, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%s\n_HOSTNAME=sender\n_TRANSPORT=syslog\n", w.real, w.mono, w.boot)
		keys := make([]string, 0, len(e))
		for k := range e {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%s\n", k, e[k])
		}
		b.WriteByte('\n')
	}
	cmd := exec.Command(w.remote, "--output="+filepath.Join(w.dir, name), "--split-mode=none", "-")
	cmd.Stdin = &b
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("systemd-journal-remote: %v\n%s", err, out)
	}
	return nil
}

// jrTruth is one expected delivery, as "deliveries --format jsonl" shows it.
type jrTruth struct {
	QueueID   string `json:"queue_id"`
	Recipient string `json:"recipient"`
	Status    string `json:"status"`
	TLS       *bool  `json:"tls"`
	TLSTrust  string `json:"tls_trust"`
}

func (d jrTruth) String() string {
	tls := "null"
	if d.TLS != nil {
		tls = fmt.Sprint(*d.TLS)
	}
	return d.QueueID + " " + d.Recipient + " " + d.Status + " tls=" + tls + " " + d.TLSTrust
}

// jrScript makes the entries of sessions [from, to): session k's smtp
// process (one of four pids) logs its TLS line (two sessions in three use
// TLS) with step k and its delivery with step k+2, so sessions are open
// across every chunk boundary, and therefore across the kills. Every fifth
// step a local user forges a TLS line and a delivery with the pid of a real
// smtp process, and every seventh an entry without journald's fields claims
// a delivery. want gets the deliveries that Postfix made.
func jrScript(from, to int, uid string, want map[string]int) []entry {
	pid := func(k int) string { return fmt.Sprint(4000 + k%4) }
	qid := func(k int) string { return fmt.Sprintf("4C%08X", k) }
	relay := func(k int) string { return fmt.Sprintf("mx%d.example.com[127.0.0.%d]:25", k%3, 10+k%3) }
	smtp := func(k int, msg string) entry {
		return entry{"SYSLOG_IDENTIFIER": "postfix/smtp", "SYSLOG_PID": pid(k), "_PID": pid(k), "_UID": uid, "_GID": uid,
			"_COMM": "smtp", "_SYSTEMD_UNIT": "postfix@-.service", "PRIORITY": "6", "SYSLOG_FACILITY": "2", "MESSAGE": msg}
	}
	var out []entry
	for k := from; k < to; k++ {
		if k%3 != 0 {
			out = append(out, smtp(k, "Trusted TLS connection established to "+relay(k)+": TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"))
		}
		if k%5 == 0 {
			out = append(out,
				entry{"SYSLOG_IDENTIFIER": "postfix/smtp", "SYSLOG_PID": pid(k + 1), "_PID": fmt.Sprint(30000 + k), "_UID": "1000", "_COMM": "logger",
					"_SYSTEMD_UNIT": "session-4.scope", "MESSAGE": "Verified TLS connection established to " + relay(k+1) + ": TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"},
				entry{"SYSLOG_IDENTIFIER": "postfix/smtp", "SYSLOG_PID": pid(k + 1), "_PID": fmt.Sprint(30000 + k), "_UID": "1000", "_COMM": "logger",
					"_SYSTEMD_UNIT": "session-4.scope", "MESSAGE": fmt.Sprintf("4F%08X: to=<forged%d@victim.example>, relay=mx.victim.example[127.0.0.99]:25, delay=0.5, delays=0.1/0/0.2/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok)", k, k)})
		}
		if k%7 == 0 {
			out = append(out, entry{"SYSLOG_IDENTIFIER": "postfix/smtp", "SYSLOG_PID": pid(k), "MESSAGE": fmt.Sprintf("4E%08X: to=<relayed%d@victim.example>, relay=mx.victim.example[127.0.0.99]:25, delay=0.5, delays=0.1/0/0.2/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok)", k, k)})
		}
		if j := k - 2; j >= 0 {
			out = append(out, smtp(j, fmt.Sprintf("%s: to=<user%d@example.com>, relay=%s, delay=0.5, delays=0.1/0/0.2/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok)", qid(j), j, relay(j))))
			tls := j%3 != 0
			d := jrTruth{QueueID: qid(j), Recipient: fmt.Sprintf("user%d@example.com", j), Status: "sent", TLS: &tls}
			if tls {
				d.TLSTrust = "trusted"
			}
			want[d.String()]++
		}
	}
	return out
}

// TestFollowRealJournal runs the real `mailtls follow --journal-dir` (so
// the real `journalctl --directory DIR -o json -f --after-cursor`) on real
// journal files written by systemd-journal-remote. The follower is killed
// with SIGKILL twice while entries arrive, entries are appended while it is
// down, and the file is rotated as journald rotates it (renamed to an
// archive name, a new system.journal started), once while the follower is
// down and once while it runs. After each catch-up every delivery Postfix made
// is stored exactly once, with the TLS of its session (sessions are open
// across each kill, so a correlator state not stored with the cursor would
// show), and none of the forged ones.
func TestFollowRealJournal(t *testing.T) {
	t.Parallel()
	journalctl, remote := realJournalTools(t)
	bin := mailtlsBin(t)
	dir := t.TempDir()
	jdir := filepath.Join(dir, "journal")
	if err := os.Mkdir(jdir, 0o755); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "follow.db")
	const uid = "4711" // Postfix's uid in these entries (--postfix-user)
	w := &jrWriter{t: t, remote: remote, dir: jdir, boot: "5a6b7c8d9e0f41a2b3c4d5e6f7a8b9c0",
		real: time.Now().Add(-time.Hour).UnixMicro()}
	want := map[string]int{}
	nwant := func() int {
		n := 0
		for _, c := range want {
			n += c
		}
		return n
	}

	var logs []string
	start := func() *exec.Cmd {
		logf := filepath.Join(dir, fmt.Sprintf("follow-%d.log", len(logs)))
		logs = append(logs, logf)
		f, err := os.Create(logf)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd := exec.Command(bin, "follow", "--journal-dir", jdir, "--journalctl", journalctl, "--postfix-user", uid,
			"--db", db, "--config", "/dev/null")
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
		return cmd
	}
	stored := func() int { return len(dump(t, bin, db)) }
	// cursor is the stored checkpoint's journal cursor.
	cursor := func() string {
		t.Helper()
		st, err := store.Open(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		raw, err := st.Checkpoint(context.Background(), "journal:"+jdir)
		if err != nil {
			t.Fatalf("checkpoint of journal:%s: %v", jdir, err)
		}
		if raw == nil {
			return "" // no commit yet
		}
		cp, err := logparse.UnmarshalCheckpoint(raw)
		if err != nil {
			t.Fatal(err)
		}
		return cp.Cursor
	}
	// last is the cursor of the journal's last entry, as journalctl says.
	last := func() string {
		t.Helper()
		out, err := exec.Command(journalctl, "--directory="+jdir, "--lines=1", "--output=json", "--no-pager", "--quiet").Output()
		if err != nil {
			t.Fatalf("journalctl --lines=1: %v", err)
		}
		var e struct {
			Cursor string `json:"__CURSOR"`
		}
		if err := json.Unmarshal(out, &e); err != nil || e.Cursor == "" {
			t.Fatalf("journalctl --lines=1 printed %q: %v", out, err)
		}
		return e.Cursor
	}
	// check compares the stored deliveries with want: each exactly once,
	// with the TLS of its session, and nothing else.
	check := func(what string) {
		t.Helper()
		got := map[string]int{}
		for _, row := range dump(t, bin, db) {
			var d jrTruth
			if err := json.Unmarshal([]byte(row), &d); err != nil {
				t.Fatalf("deliveries row %q: %v", row, err)
			}
			got[d.String()]++
		}
		var bad []string
		for k, n := range want {
			if got[k] != n {
				bad = append(bad, fmt.Sprintf("%s: stored %d times, want %d", k, got[k], n))
			}
		}
		for k, n := range got {
			if want[k] == 0 {
				bad = append(bad, fmt.Sprintf("%s: stored %d times, not a delivery Postfix made", k, n))
			}
		}
		sort.Strings(bad)
		if len(bad) > 0 {
			t.Fatalf("%s: %d of %d deliveries wrong:\n%s", what, len(bad), nwant(), strings.Join(bad[:min(len(bad), 20)], "\n"))
		}
	}
	// caughtUp waits until the follower has stored the position of the
	// journal's last entry (a delivery, so its commit is the last), then
	// checks what is stored.
	caughtUp := func(what string) {
		t.Helper()
		end := last()
		deadline := time.Now().Add(90 * time.Second)
		for cursor() != end {
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(logs[len(logs)-1])
				t.Fatalf("%s: the follower did not reach the journal's end within 90s; its log:\n%s", what, b[max(0, len(b)-3000):])
			}
			time.Sleep(50 * time.Millisecond) // polling interval
		}
		check(what)
	}
	// killAtCommit SIGKILLs the follower as soon as it commits a position
	// past cur: at that moment it is reading the new entries, and a
	// follower that stored its cursor apart from (ahead of) the deliveries
	// would lose those it had not stored yet.
	killAtCommit := func(cmd *exec.Cmd, cur string) {
		t.Helper()
		waitFor(t, "a commit after "+cur, 90*time.Second, func() bool { return cursor() != cur })
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		t.Logf("SIGKILL with %d of the %d deliveries in the entries written (or being written) stored", stored(), nwant())
	}

	// 1. A first journal file, read from its start.
	w.write("system.journal", jrScript(0, 120, uid, want))
	f1 := start()
	caughtUp("first file")

	// writeSlowly writes sessions [from, to) to the journal file name, two
	// at a time with pauses (pacing the writer, not synchronisation), so
	// that the follower commits several times while they arrive; the
	// returned channel is closed when all are written.
	writeSlowly := func(name string, from, to int) <-chan struct{} {
		var pieces [][]entry
		for k := from; k < to; k += 2 {
			pieces = append(pieces, jrScript(k, min(k+2, to), uid, want))
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for _, p := range pieces {
				if err := w.tryWrite(name, p); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(30 * time.Millisecond)
			}
		}()
		return done
	}

	// 2. More entries in the same file; SIGKILL while they are being read.
	cur := cursor()
	done := writeSlowly("system.journal", 120, 200)
	killAtCommit(f1, cur)
	<-done
	// ... and more while it is down, then a rotation as journald makes
	// one (the file is renamed to an archive name and a new system.journal
	// is started) and entries in the new file.
	w.write("system.journal", jrScript(200, 240, uid, want))
	rotate := func(n int) {
		t.Helper()
		archived := fmt.Sprintf("system@%032x-%016x-%016x.journal", n, n, w.real)
		if err := os.Rename(filepath.Join(jdir, "system.journal"), filepath.Join(jdir, archived)); err != nil {
			t.Fatal(err)
		}
	}
	rotate(1)
	w.write("system.journal", jrScript(240, 300, uid, want))

	// 3. Restart: resumes after the stored cursor, across both files;
	// killed again while the new file grows.
	f2 := start()
	caughtUp("after the first kill")
	cur = cursor()
	done = writeSlowly("system.journal", 300, 380)
	killAtCommit(f2, cur)
	<-done
	w.write("system.journal", jrScript(380, 400, uid, want))

	// 4. The last run reads the rest, and goes on across a rotation made
	// while it runs; stopped gracefully.
	f3 := start()
	caughtUp("after the second kill")
	rotate(2)
	w.write("system.journal", jrScript(400, 440, uid, want))
	caughtUp("after a rotation while running")
	if err := f3.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := f3.Wait(); err != nil {
		t.Fatalf("follow exited with %v after SIGTERM", err)
	}

	check("after SIGTERM")
	if nwant() < 400 {
		t.Fatalf("script made only %d deliveries", nwant())
	}

	// The forgeries were seen and counted, by reason.
	var all []byte
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		all = append(all, b...)
	}
	for _, want := range []string{"reason=uid", "reason=no_uid", "journal entries skipped as not from Postfix"} {
		if !bytes.Contains(all, []byte(want)) {
			t.Errorf("follower logs lack %q:\n%s", want, all)
		}
	}
}
