//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/bench/gen"
)

// TestFollowSurvivesSIGKILL kills the real `mailtls follow` process with
// SIGKILL at 50 random moments while a writer appends 200,000 lines and
// rotates the log twice, once by rename and once by copytruncate. After a
// final restart the stored deliveries must equal those of one clean import
// of the same content: nothing lost, nothing counted twice.
func TestFollowSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	bin := mailtlsBin(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "mail.log")
	db := filepath.Join(dir, "follow.db")

	var logBuf bytes.Buffer
	truth, err := gen.Log(&logBuf, gen.LogConfig{Seed: 7, Lines: 200_000, Start: time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Second), Duration: 47 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(logBuf.Bytes(), []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if len(lines) < 190_000 || len(truth.Deliveries) == 0 {
		t.Fatalf("generator wrote %d lines, %d deliveries", len(lines), len(truth.Deliveries))
	}

	// The reference: one clean import of the same content.
	all := filepath.Join(dir, "all.log")
	if err := os.WriteFile(all, logBuf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	refDB := filepath.Join(dir, "ref.db")
	if out, err := exec.Command(bin, "import", "--db", refDB, all).CombinedOutput(); err != nil {
		t.Fatalf("import: %v: %s", err, out)
	}
	want := dump(t, bin, refDB)

	// The writer appends in random chunks, rotating at 1/3 (rename) and
	// 2/3 (copytruncate). It ends by leaving the last line without its
	// newline for a moment, as a syslog daemon mid-write would.
	rng := rand.New(rand.NewPCG(1, 2))  // the kill schedule
	wrng := rand.New(rand.NewPCG(3, 4)) // the writer's own
	writerDone := make(chan error, 1)
	go func() {
		rng := wrng
		writerDone <- func() error {
			f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return err
			}
			defer func() { f.Close() }()
			rotated := 0
			for i := 0; i < len(lines); {
				n := 200 + rng.IntN(2000)
				if i+n > len(lines) {
					n = len(lines) - i
				}
				if _, err := f.Write(bytes.Join(lines[i:i+n], nil)); err != nil {
					return err
				}
				i += n
				switch {
				case rotated == 0 && i > len(lines)/3:
					rotated++
					f.Close()
					if err := os.Rename(logPath, logPath+".1"); err != nil {
						return err
					}
					if f, err = os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
						return err
					}
				case rotated == 1 && i > 2*len(lines)/3:
					rotated++
					if err := os.Rename(logPath+".1", logPath+".2"); err != nil {
						return err
					}
					data, err := os.ReadFile(logPath)
					if err != nil {
						return err
					}
					if err := os.WriteFile(logPath+".1", data, 0o644); err != nil {
						return err
					}
					if err := f.Truncate(0); err != nil {
						return err
					}
				}
				time.Sleep(time.Duration(30+rng.IntN(60)) * time.Millisecond) // pacing the writer, not synchronisation
			}
			return nil
		}()
	}()

	// Every run's info log goes to one file, each run's after a marker
	// line, so that a failure can show what the runs saw.
	followLog, err := os.OpenFile(filepath.Join(dir, "follow.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer followLog.Close()
	runs := 0
	start := func() *exec.Cmd {
		runs++
		fmt.Fprintf(followLog, "=== run %d\n", runs)
		cmd := exec.Command(bin, "follow", "--log", logPath, "--db", db, "--poll", "20ms", "--config", "/dev/null", "--log-level", "info")
		cmd.Stderr = followLog
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	// Most runs are killed at a random moment after they stored something:
	// a run killed before its first commit leaves nothing behind, and on a
	// loaded machine (starting, opening the database and reading up to the
	// first commit can take longer than any moment drawn here) the runs
	// would all be such, and the test would only check that a final run
	// without checkpoint follows the file at Path from its start. The
	// others are killed at a random moment after they start, which may be
	// before their first commit.
	kills := 0
	writing := true
	for kills < 50 {
		before := stored(t, bin, db)
		cmd := start()
		if rng.IntN(4) != 0 {
			deadline := time.Now().Add(2 * time.Minute)
			for n := before; n <= before && n < len(want); n = stored(t, bin, db) {
				if time.Now().After(deadline) {
					t.Fatalf("run %d stored nothing in 2 minutes (%d of %d stored)", runs, n, len(want))
				}
				time.Sleep(20 * time.Millisecond) // polling interval
			}
			time.Sleep(time.Duration(rng.IntN(250)) * time.Millisecond) // a random moment to kill at
		} else {
			time.Sleep(time.Duration(30+rng.IntN(250)) * time.Millisecond) // a random moment to kill at
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		kills++
		if writing {
			select {
			case err := <-writerDone:
				if err != nil {
					t.Fatal(err)
				}
				writing = false
			default:
			}
		}
	}
	if writing {
		if err := <-writerDone; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d SIGKILLs", kills)

	final := start()
	defer func() {
		_ = final.Process.Signal(syscall.SIGTERM)
		_ = final.Wait()
	}()
	var got []string
	deadline := time.Now().Add(90 * time.Second)
	for {
		got = dump(t, bin, db)
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
	lost, dup := diff(want, got)
	if len(lost) > 0 || len(dup) > 0 || len(got) != len(want) {
		// Each extra row, with the reference rows of the same queue id and
		// recipient: a duplicate shows twice, a wrong field beside the right.
		for i, d := range dup {
			if i == 5 {
				break
			}
			t.Logf("extra: %s", d)
			for _, w := range want {
				if sameMessage(w, d) {
					t.Logf("  reference: %s", w)
				}
			}
		}
		logFollower(t, filepath.Join(dir, "follow.log"))
		t.Fatalf("after %d SIGKILLs: %d stored, %d expected; %d lost (e.g. %q), %d extra/duplicated (e.g. %q)",
			kills, len(got), len(want), len(lost), first(lost), len(dup), first(dup))
	}
	t.Logf("followers' file events: %s", eventCounts(t, filepath.Join(dir, "follow.log")))
	if len(want) < len(truth.Deliveries)*9/10 {
		t.Fatalf("reference import stored %d of %d generated deliveries", len(want), len(truth.Deliveries))
	}
}

// stored returns the number of deliveries stored in db.
func stored(t *testing.T, bin, db string) int {
	t.Helper()
	out, err := exec.Command(bin, "status", "--db", db, "--format", "json").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(out) > 0 {
			err = nil // exit 1 reports a stale follower; the JSON is complete
		} else {
			t.Fatalf("status: %v", err)
		}
	}
	var s struct {
		Stored *int `json:"deliveries_stored"`
	}
	if err := json.Unmarshal(out, &s); err != nil || s.Stored == nil {
		t.Fatalf("status: no deliveries_stored in %q (%v)", out, err)
	}
	return *s.Stored
}

func dump(t *testing.T, bin, db string) []string {
	t.Helper()
	out, err := exec.Command(bin, "deliveries", "--db", db, "--format", "jsonl").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("deliveries: %v: %s", err, ee.Stderr)
		}
		t.Fatalf("deliveries: %v", err)
	}
	var rows []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		rows = append(rows, sc.Text())
	}
	sort.Strings(rows)
	return rows
}

// diff returns rows of want missing from got, and rows of got beyond want
// (extra or duplicated), comparing as multisets.
func diff(want, got []string) (lost, extra []string) {
	count := map[string]int{}
	for _, w := range want {
		count[w]++
	}
	for _, g := range got {
		count[g]--
	}
	for k, n := range count {
		for ; n > 0; n-- {
			lost = append(lost, k)
		}
		for ; n < 0; n++ {
			extra = append(extra, k)
		}
	}
	return lost, extra
}

// sameMessage reports whether two jsonl delivery rows have the same queue
// id and recipient.
func sameMessage(a, b string) bool {
	var x, y struct {
		QueueID   string `json:"queue_id"`
		Recipient string `json:"recipient"`
	}
	return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil &&
		x.QueueID == y.QueueID && x.Recipient == y.Recipient
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return strings.TrimSpace(fmt.Sprint(s[0]))
}

// logFollower logs the lines of the followers' log about files: rotation,
// truncation, recovery, resumption and warnings, with the run markers.
func logFollower(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Logf("follower log: %v", err)
		return
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "=== run") || strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") ||
			strings.Contains(l, "rotat") || strings.Contains(l, "truncat") || strings.Contains(l, "resum") || strings.Contains(l, "from its start") || strings.Contains(l, "copy") {
			t.Logf("follower: %s", l)
		}
	}
}

// eventCounts counts the messages of the followers' log, e.g. how many runs
// resumed and how many started without a checkpoint.
func eventCounts(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, l := range strings.Split(string(data), "\n") {
		if i := strings.Index(l, ` msg="`); i >= 0 {
			if m, _, ok := strings.Cut(l[i+6:], `"`); ok {
				n[m]++
			}
		}
	}
	var out []string
	for m, c := range n {
		out = append(out, fmt.Sprintf("%d× %q", c, m))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
