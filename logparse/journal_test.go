package logparse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mailtls/mailtls/delivery"
)

// The journal tests run JournalFollower against testdata/fakejournalctl,
// which replays a "journalctl -o json" fixture and honours --after-cursor.

// jrBuildFake builds the fake journalctl into a temporary directory.
func jrBuildFake(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	out := filepath.Join(t.TempDir(), "fakejournalctl")
	cmd := exec.Command(goTool, "build", "-o", out, "./testdata/fakejournalctl")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the fake journalctl: %v\n%s", err, b)
	}
	return out
}

// jrEntry is one fixture entry.
type jrEntry struct {
	line   string
	cursor string
	ident  string // "" when not a string
}

func jrFixture(t *testing.T, name string) (path string, entries []jrEntry) {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("testdata", "journal", name))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("fixture %s: %v", name, err)
		}
		e := jrEntry{line: l, cursor: m["__CURSOR"].(string)}
		e.ident, _ = m["SYSLOG_IDENTIFIER"].(string)
		entries = append(entries, e)
	}
	return path, entries
}

// jrCleanPass feeds the entries whose identifier starts with prefix to a
// fresh correlator.
func jrCleanPass(entries []jrEntry, prefix string) ([]delivery.Delivery, Stats) {
	c := flNewCorrelator()
	var out []delivery.Delivery
	for _, e := range entries {
		if strings.HasPrefix(e.ident, prefix) {
			out = append(out, c.Feed([]byte(e.line))...)
		}
	}
	return out, c.Stats()
}

type jrRun struct {
	t      *testing.T
	j      *JournalFollower
	arglog string
	cancel context.CancelFunc
	done   chan error
}

func jrNew(t *testing.T, fake, fixture string, env ...string) *JournalFollower {
	arglog := filepath.Join(t.TempDir(), "args")
	return &JournalFollower{
		Journalctl:    fake,
		Env:           append([]string{"FAKEJOURNALCTL_FIXTURE=" + fixture, "FAKEJOURNALCTL_ARGLOG=" + arglog}, env...),
		BatchEvery:    10 * time.Millisecond,
		Backoff:       time.Millisecond,
		MaxBackoff:    10 * time.Millisecond,
		NewCorrelator: flNewCorrelator,
		Trust:         JournalTrust{UIDs: []uint32{jrPostfixUID}},
	}
}

// jrPostfixUID is the postfix user's uid in the fixtures.
const jrPostfixUID = 100

func jrStart(t *testing.T, j *JournalFollower, db *followDB, from Checkpoint) *jrRun {
	ctx, cancel := context.WithCancel(context.Background())
	r := &jrRun{t: t, j: j, arglog: strings.TrimPrefix(j.Env[1], "FAKEJOURNALCTL_ARGLOG="), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- j.Run(ctx, from, db.commit) }()
	t.Cleanup(func() { cancel(); <-r.done; r.done <- nil })
	return r
}

func (r *jrRun) stop() error {
	r.cancel()
	return r.wait()
}

// wait waits until Run returns.
func (r *jrRun) wait() error {
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(testTimeout):
		r.t.Fatal("journal follower did not stop")
		return nil
	}
}

// invocations returns the argument lists journalctl was run with.
func (r *jrRun) invocations() [][]string {
	b, err := os.ReadFile(r.arglog)
	if err != nil {
		r.t.Fatal(err)
	}
	var out [][]string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		out = append(out, strings.Split(l, "\t"))
	}
	return out
}

// waitCursor waits until the store's checkpoint has the given cursor.
func (db *followDB) waitCursor(t *testing.T, cursor string) {
	t.Helper()
	timedOut := false
	timer := time.AfterFunc(testTimeout, func() {
		db.mu.Lock()
		timedOut = true
		db.changed.Broadcast()
		db.mu.Unlock()
	})
	defer timer.Stop()
	db.mu.Lock()
	defer db.mu.Unlock()
	for {
		cp, _ := UnmarshalCheckpoint(db.cp)
		if cp.Cursor == cursor {
			return
		}
		if timedOut {
			t.Fatalf("checkpoint cursor is %q, want %q", cp.Cursor, cursor)
		}
		db.changed.Wait()
	}
}

func cursorArg(args []string) string {
	for _, a := range args {
		if c, ok := strings.CutPrefix(a, "--after-cursor="); ok {
			return c
		}
	}
	return ""
}

func TestJournalFollowFromStart(t *testing.T) {
	fake := jrBuildFake(t)
	for _, tc := range []struct {
		fixture string
		idents  []string
		prefix  string
	}{
		{"postfix.json", nil, "postfix"},
		{"postfix-spaced.json", nil, "postfix"},
		{"postfix.json", []string{"postfix-out"}, "postfix-out"},
	} {
		t.Run(tc.fixture+"/"+tc.prefix, func(t *testing.T) {
			fixture, entries := jrFixture(t, tc.fixture)
			db := newFollowDB()
			j := jrNew(t, fake, fixture)
			j.Identifiers = tc.idents
			j.Trust.Units = []string{"postfix@-.service", "postfix@postfix-out.service"}
			j.Directory = "/var/log/journal"
			r := jrStart(t, j, db, Checkpoint{})
			db.waitCursor(t, entries[len(entries)-1].cursor)
			if err := r.stop(); err != nil {
				t.Fatalf("Run after cancel = %v, want nil", err)
			}
			want, wantStats := jrCleanPass(entries, tc.prefix)
			flCompare(t, db.deliveries(), want)
			if db.stats != wantStats {
				t.Errorf("stats %+v, want %+v: only matching entries are fed", db.stats, wantStats)
			}
			inv := r.invocations()
			if len(inv) != 1 {
				t.Fatalf("journalctl ran %d times, want once: %q", len(inv), inv)
			}
			got := strings.Join(inv[0], " ")
			if got != "--follow --no-tail --output=json --no-pager --unit=postfix@-.service --unit=postfix@postfix-out.service --directory=/var/log/journal" {
				t.Fatalf("journalctl arguments %q", got)
			}
		})
	}
}

// TestJournalRestartsAfterDeath makes journalctl die after every 4 entries,
// in the middle of writing the 5th: the cut entry must not be consumed, and
// each restart must continue after the last committed cursor.
func TestJournalRestartsAfterDeath(t *testing.T) {
	const every = 4
	fake := jrBuildFake(t)
	fixture, entries := jrFixture(t, "postfix.json")
	db := newFollowDB()
	lb, log := newLogBuffer()
	j := jrNew(t, fake, fixture, fmt.Sprintf("FAKEJOURNALCTL_DIE_AFTER=%d", every))
	j.Logger = log
	r := jrStart(t, j, db, Checkpoint{})
	db.waitCursor(t, entries[len(entries)-1].cursor)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	want, _ := jrCleanPass(entries, "postfix")
	flCompare(t, db.deliveries(), want)
	inv := r.invocations()
	runs := (len(entries) + every - 1) / every
	if len(inv) != runs {
		t.Fatalf("journalctl ran %d times, want %d", len(inv), runs)
	}
	for k, args := range inv {
		want := ""
		if k > 0 {
			want = entries[k*every-1].cursor
		}
		if got := cursorArg(args); got != want {
			t.Errorf("run %d: --after-cursor=%q, want %q", k, got, want)
		}
	}
	if n := lb.count("journalctl exited; restarting"); n != runs-1 {
		t.Errorf("%d restarts logged, want %d", n, runs-1)
	}
}

// TestJournalResumeAfterCrash kills the follower at every commit in turn,
// before or after the commit is stored, and resumes from the stored
// checkpoint: the store must end up with one clean pass.
func TestJournalResumeAfterCrash(t *testing.T) {
	fake := jrBuildFake(t)
	fixture, entries := jrFixture(t, "postfix.json")
	want, wantStats := jrCleanPass(entries, "postfix")
	last := entries[len(entries)-1].cursor
	for k := 1; k <= len(want); k++ {
		for _, lose := range []bool{true, false} {
			db := newFollowDB()
			commits := 0
			var run *jrRun
			db.hook = func(db *followDB, b Batch) (bool, error) {
				commits++
				if commits != k {
					return true, nil
				}
				db.dead = true
				run.cancel()
				if lose {
					return false, errCrashed
				}
				db.store(b)
				return false, nil
			}
			j := jrNew(t, fake, fixture)
			j.MaxBatch = 1
			j.BatchEvery = time.Hour // commits come from MaxBatch and the end only
			db.mu.Lock()             // the hook reads run
			run = jrStart(t, j, db, Checkpoint{})
			db.mu.Unlock()
			err := run.wait() // until the crash
			if lose && !errors.Is(err, ErrCommit) {
				t.Fatalf("crash at commit %d: Run = %v, want ErrCommit", k, err)
			}
			db.mu.Lock()
			db.dead, db.hook = false, nil
			db.mu.Unlock()
			cp := db.checkpoint(t)
			j2 := jrNew(t, fake, fixture)
			j2.MaxBatch = 1
			r2 := jrStart(t, j2, db, cp)
			db.waitCursor(t, last)
			if err := r2.stop(); err != nil {
				t.Fatal(err)
			}
			flCompare(t, db.deliveries(), want)
			if db.stats != wantStats {
				t.Fatalf("crash at commit %d (lose=%v): stats %+v, want %+v", k, lose, db.stats, wantStats)
			}
			if got := cursorArg(r2.invocations()[0]); got != cp.Cursor {
				t.Fatalf("restart used --after-cursor=%q, want the stored %q", got, cp.Cursor)
			}
		}
	}
}

func TestJournalBadCursor(t *testing.T) {
	fake := jrBuildFake(t)
	fixture, _ := jrFixture(t, "postfix.json")
	lb, log := newLogBuffer()
	seen := make(chan struct{}, 100)
	lb.notify = seen
	j := jrNew(t, fake, fixture)
	j.Logger = log
	db := newFollowDB()
	r := jrStart(t, j, db, Checkpoint{Cursor: "s=0;i=0;b=0;m=0;t=0;x=0"})
	timeout := time.After(testTimeout)
	for lb.count("journalctl exited; restarting") < 2 {
		select {
		case <-seen:
		case <-timeout:
			t.Fatalf("no restarts; log:\n%s", lb.buf.String())
		}
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if lb.count("Failed to seek to cursor") < 2 {
		t.Fatalf("journalctl's complaint not logged:\n%s", lb.buf.String())
	}
	for _, args := range r.invocations() {
		if got := cursorArg(args); got != "s=0;i=0;b=0;m=0;t=0;x=0" {
			t.Fatalf("restart with cursor %q: the stored one must be kept", got)
		}
	}

	j = &JournalFollower{Journalctl: filepath.Join(t.TempDir(), "no-such-journalctl")}
	err := j.Run(context.Background(), Checkpoint{}, db.commit)
	if !errors.Is(err, ErrJournalctl) {
		t.Fatalf("Run with a missing journalctl = %v, want ErrJournalctl", err)
	}
}

func TestJournalField(t *testing.T) {
	for _, tc := range []struct {
		line, name, want string
		ok               bool
	}{
		{`{"__CURSOR":"s=1;i=2","MESSAGE":"x"}`, "__CURSOR", "s=1;i=2", true},
		{`{ "__CURSOR" : "s=1;i=2", "MESSAGE" : "x" }`, "__CURSOR", "s=1;i=2", true},
		{`{"MESSAGE":"a \"__CURSOR\":\"evil\"","__CURSOR":"good"}`, "__CURSOR", "good", true},
		{`{"A":"__CURSOR","__CURSOR":"good"}`, "__CURSOR", "good", true},
		{`{"A\"__CURSOR":"bad","__CURSOR":"good"}`, "__CURSOR", "good", true},
		{`{"A":"x",` + "\n\t" + `"__CURSOR"` + "\n" + `:` + "\t" + `"good"}`, "__CURSOR", "good", true},
		{`{"SYSLOG_IDENTIFIER":"postfix\/smtp"}`, "SYSLOG_IDENTIFIER", "postfix/smtp", true},
		{`{"SYSLOG_IDENTIFIER":"p\u00f6stfix"}`, "SYSLOG_IDENTIFIER", "pöstfix", true},
		{`{"SYSLOG_IDENTIFIER":[112,255]}`, "SYSLOG_IDENTIFIER", "", false},
		{`{"SYSLOG_IDENTIFIER":null}`, "SYSLOG_IDENTIFIER", "", false},
		{`{"MESSAGE":"x"}`, "__CURSOR", "", false},
		{`{"__CURSOR":"unterminated`, "__CURSOR", "", false},
		{`{"__CURSOR":"bad \q escape"}`, "__CURSOR", "", false},
		{``, "__CURSOR", "", false},
	} {
		got, ok := journalField([]byte(tc.line), tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("journalField(%s, %s) = %q, %v; want %q, %v", tc.line, tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzJournalField checks journalField against encoding/json on flat
// objects with unique keys, which is what journalctl writes.
func FuzzJournalField(f *testing.F) {
	f.Add([]byte(`{"__CURSOR":"s=1;i=2","MESSAGE":"x"}`))
	f.Add([]byte(`{ "__CURSOR" : "s=1", "MESSAGE" : [1,2] }`))
	f.Add([]byte(`{"MESSAGE":"a \"__CURSOR\":\"evil\"","__CURSOR":"g\u00e9"}`))
	f.Add([]byte(`{"__CURSOR":null}`))
	f.Add([]byte(`{"__CURSOR":"x\`))
	f.Fuzz(func(t *testing.T, line []byte) {
		got, ok := journalField(line, "__CURSOR")
		fields, flat := jrFlatObject(line)
		if !flat {
			return
		}
		want, isString := fields["__CURSOR"].(string)
		if ok != isString || got != want {
			t.Fatalf("journalField(%q) = %q, %v; encoding/json says %q, %v", line, got, ok, want, isString)
		}
	})
}

// jrFlatObject decodes line if it is one valid UTF-8 JSON object whose
// values are not objects, and in which "__CURSOR" occurs once, literally.
func jrFlatObject(line []byte) (map[string]any, bool) {
	if !json.Valid(line) || !utf8.Valid(line) || bytes.Count(line, []byte(`"__CURSOR"`)) != 1 {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	m := make(map[string]any)
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, false
		}
		k, _ := kt.(string)
		var rv json.RawMessage
		if err := dec.Decode(&rv); err != nil || bytes.ContainsRune(rv, '{') {
			return nil, false
		}
		var v any
		if err := json.Unmarshal(rv, &v); err != nil {
			return nil, false
		}
		if _, dup := m[k]; dup {
			return nil, false
		}
		m[k] = v
	}
	return m, true
}
