//go:build linux

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFollowJournalRestart runs the real `mailtls follow --journal` against
// the stand-in journalctl (no journald runs here), dying mid-entry and then
// restarted: the stored deliveries must equal a clean import of the same
// entries, and every restart must resume after the last stored cursor.
func TestFollowJournalRestart(t *testing.T) {
	t.Parallel()
	bin := mailtlsBin(t)
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	fixture := filepath.Join(root, "logparse", "testdata", "journal", "postfix.json")
	dir := t.TempDir()
	fake := filepath.Join(dir, "journalctl")
	build := exec.Command("go", "build", "-o", fake, "./logparse/testdata/fakejournalctl")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build fake journalctl: %v\n%s", err, out)
	}

	refDB := filepath.Join(dir, "ref.db")
	if out, err := exec.Command(bin, "import", "--db", refDB, "--postfix-user", "100", fixture).CombinedOutput(); err != nil {
		t.Fatalf("import: %v: %s", err, out)
	}
	want := dump(t, bin, refDB)
	if len(want) < 5 {
		t.Fatalf("fixture gives only %d deliveries", len(want))
	}

	db := filepath.Join(dir, "j.db")
	argLog := filepath.Join(dir, "args.log")
	run := func(extraEnv ...string) *exec.Cmd {
		cmd := exec.Command(bin, "follow", "--journal", "--journalctl", fake, "--db", db, "--postfix-user", "100", "--config", "/dev/null")
		cmd.Env = append(os.Environ(), append([]string{"FAKEJOURNALCTL_FIXTURE=" + fixture, "FAKEJOURNALCTL_ARGLOG=" + argLog}, extraEnv...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	runs := func() []string {
		b, _ := os.ReadFile(argLog)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	// First run: journalctl dies after 7 entries, half-way through the 8th;
	// mailtls restarts it from the last committed cursor.
	cmd := run("FAKEJOURNALCTL_DIE_AFTER=7")
	// Generous: under `make check` every package runs at once with -race.
	deadline := time.Now().Add(120 * time.Second)
	for len(dump(t, bin, db)) < len(want) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d deliveries stored after 120s; journalctl runs: %q", len(dump(t, bin, db)), len(want), runs())
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("follow exited with %v after SIGTERM", err)
	}
	// Second process: resumes after the stored cursor and adds nothing.
	cmd = run()
	waitFor(t, "second run started journalctl", 120*time.Second, func() bool { return len(runs()) >= 3 })
	last := runs()[len(runs())-1]
	if !strings.Contains(last, "--after-cursor=") {
		t.Errorf("restart did not resume from a cursor: %q", last)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	got := dump(t, bin, db)
	lost, extra := diff(want, got)
	if len(lost) > 0 || len(extra) > 0 {
		t.Fatalf("journal follow vs import: %d lost (%q), %d extra (%q); journalctl runs: %q", len(lost), first(lost), len(extra), first(extra), runs())
	}
}
