package logparse

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/bench/gen"
	"github.com/mailtls/mailtls/delivery"
)

// The tests drive the follower one poll at a time through a TestWaker; no
// test sleeps. Expected deliveries always come from a clean pass: a fresh
// Correlator fed the same lines in order.

// testTimeout guards every wait; a test that needs it has failed.
const testTimeout = 30 * time.Second

// followDB is the fake store: it keeps every delivery ever committed (so
// duplicates show) and the last checkpoint, both updated atomically.
type followDB struct {
	mu      sync.Mutex
	changed *sync.Cond
	rows    []delivery.Delivery
	cp      []byte
	stats   Stats
	batches []Batch // every committed batch, without deliveries
	dead    bool    // simulated crash: every commit fails
	// hook, if set, runs under the lock before a commit is stored. It
	// returns whether to store it, and the error to return.
	hook func(db *followDB, b Batch) (store bool, err error)
}

var errCrashed = errors.New("simulated crash: commit lost")

func newFollowDB() *followDB {
	db := &followDB{}
	db.changed = sync.NewCond(&db.mu)
	return db
}

func (db *followDB) commit(_ context.Context, b Batch) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.dead {
		return errCrashed
	}
	if db.hook != nil {
		store, err := db.hook(db, b)
		if store {
			db.store(b)
		}
		return err
	}
	db.store(b)
	return nil
}

func (db *followDB) store(b Batch) {
	db.rows = append(db.rows, slices.Clone(b.Deliveries)...)
	db.cp = b.Checkpoint.Marshal()
	db.stats = b.Stats
	b.Deliveries = nil
	db.batches = append(db.batches, b)
	db.changed.Broadcast()
}

func (db *followDB) checkpoint(t *testing.T) Checkpoint {
	t.Helper()
	db.mu.Lock()
	defer db.mu.Unlock()
	cp, err := UnmarshalCheckpoint(db.cp)
	if err != nil {
		t.Fatalf("stored checkpoint: %v", err)
	}
	return cp
}

func (db *followDB) deliveries() []delivery.Delivery {
	db.mu.Lock()
	defer db.mu.Unlock()
	return slices.Clone(db.rows)
}

// followRun is one Follower.Run in the background, driven by a TestWaker.
type followRun struct {
	t      *testing.T
	f      *Follower
	w      *TestWaker
	cancel context.CancelFunc
	ctx    context.Context
	done   chan error
}

// startFollow runs a follower of path from cp, committing to db, and
// returns once it has finished its first poll.
func startFollow(t *testing.T, path string, db *followDB, cp Checkpoint, log *slog.Logger, tune func(*Follower)) *followRun {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := NewTestWaker()
	f := &Follower{
		Path:          path,
		Waker:         w,
		Logger:        log,
		BatchEvery:    time.Hour, // batches close at EOF or MaxBatch unless a test says otherwise
		NewCorrelator: flNewCorrelator,
	}
	if tune != nil {
		tune(f)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &followRun{t: t, f: f, w: w, cancel: cancel, ctx: ctx, done: make(chan error, 1)}
	go func() { h.done <- f.Run(ctx, cp, db.commit) }()
	t.Cleanup(func() { h.cancel(); <-h.done })
	h.waitIdle()
	return h
}

// flRunOnce runs a follower of path from scratch until its first poll is
// done, stops it, and returns the checkpoint it stored in db.
func flRunOnce(t *testing.T, path string, db *followDB) Checkpoint {
	t.Helper()
	h := startFollow(t, path, db, Checkpoint{}, nil, nil)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	return db.checkpoint(t)
}

// flGzip returns b gzip-compressed.
func flGzip(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// flRotate moves the file at path to to, gzip-compressed when gz, and
// gives it modification time mod, as logrotate leaves a rotated file.
func flRotate(t *testing.T, path, to string, gz bool, mod time.Time) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if gz {
		data = flGzip(data)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(to, mod, mod); err != nil {
		t.Fatal(err)
	}
}

func flNewCorrelator() *Correlator {
	return NewCorrelator(Options{RefTime: time.Date(2025, 11, 28, 0, 0, 0, 0, time.UTC), Location: time.UTC})
}

func (h *followRun) waitIdle() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, testTimeout)
	defer cancel()
	if err := h.w.WaitIdle(ctx); err != nil {
		select {
		case err := <-h.done:
			h.done <- err
			h.t.Fatalf("follower stopped: %v", err)
		default:
		}
		h.t.Fatalf("follower never went idle: %v", err)
	}
}

// poll runs one whole poll.
func (h *followRun) poll() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, testTimeout)
	defer cancel()
	if err := h.w.Poll(ctx); err != nil {
		select {
		case err := <-h.done:
			h.done <- err
			h.t.Fatalf("follower stopped: %v", err)
		default:
		}
		h.t.Fatalf("poll: %v", err)
	}
}

// pollUntil polls until cond holds, at most limit times.
func (h *followRun) pollUntil(limit int, what string, cond func() bool) {
	h.t.Helper()
	for i := 0; !cond(); i++ {
		if i == limit {
			h.t.Fatalf("after %d polls: still not %s", limit, what)
		}
		h.poll()
	}
}

// stop cancels the run and returns its error.
func (h *followRun) stop() error {
	h.cancel()
	select {
	case err := <-h.done:
		h.done <- err
		return err
	case <-time.After(testTimeout):
		h.t.Fatal("follower did not stop")
		return nil
	}
}

// flStamp is the time of generated line i: unique per line, so every
// generated line (and delivery.Delivery.Key) is unique.
func flStamp(i int) string {
	return time.Date(2025, 11, 28, 6, 0, 0, 0, time.UTC).Add(time.Duration(i) * 1117 * time.Microsecond).Format("2006-01-02T15:04:05.000000-07:00")
}

// flDelivery is a realistic delivery line of smtp process pid.
func flDelivery(i, pid int, status string) string {
	dsn, text := "2.0.0", "250 2.0.0 Ok: queued as 4Q9"+fmt.Sprintf("%05X", i)
	switch status {
	case "deferred":
		dsn, text = "4.4.2", "lost connection with mx.d"+fmt.Sprint(i%13)+".example[192.0.2.7] while sending RCPT TO"
	case "bounced":
		dsn, text = "5.1.1", "host mx.d"+fmt.Sprint(i%13)+".example[192.0.2.7] said: 550 5.1.1 <u"+fmt.Sprint(i)+"@d.example>: Recipient address rejected: User unknown (in reply to RCPT TO command)"
	}
	return fmt.Sprintf("%s mx1 postfix/smtp[%d]: 4Q8%06X: to=<user%d@d%d.example>, relay=mx.d%d.example[192.0.2.%d]:25, delay=0.%d, delays=0.01/0/0.2/0.1, dsn=%s, status=%s (%s)",
		flStamp(i), pid, i, i, i%13, i%13, 1+i%13, i%10, dsn, status, text)
}

// flTLS is the TLS summary line that opens a session of pid to the relay
// that flDelivery(j) uses.
func flTLS(i, pid, j int) string {
	return fmt.Sprintf("%s mx1 postfix/smtp[%d]: Trusted TLS connection established to mx.d%d.example[192.0.2.%d]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256",
		flStamp(i), pid, j%13, 1+j%13)
}

// flLines returns n delivery lines numbered from first, each after its own
// TLS line when tls is set (2n lines then).
func flLines(first, n int, tls bool) string {
	var b strings.Builder
	for i := first; i < first+n; i++ {
		if tls {
			b.WriteString(flTLS(2*i, 100+i%5, 2*i+1) + "\n")
			b.WriteString(flDelivery(2*i+1, 100+i%5, "sent") + "\n")
		} else {
			b.WriteString(flDelivery(i, 100+i%5, "sent") + "\n")
		}
	}
	return b.String()
}

// flCleanPass feeds every line of content (the last one too, with or
// without newline) to a fresh correlator.
func flCleanPass(content string) ([]delivery.Delivery, Stats) {
	c := flNewCorrelator()
	var out []delivery.Delivery
	rest := content
	for rest != "" {
		line, more, _ := strings.Cut(rest, "\n")
		out = append(out, c.Feed([]byte(line))...)
		rest = more
	}
	return out, c.Stats()
}

// flCompare checks that got holds exactly the deliveries of want: each key
// exactly once, each record identical. want must not be empty.
func flCompare(t *testing.T, got, want []delivery.Delivery) {
	t.Helper()
	if len(want) == 0 {
		t.Fatal("test bug: no expected deliveries")
	}
	wantBy := make(map[string]delivery.Delivery, len(want))
	for _, d := range want {
		if _, dup := wantBy[d.Key]; dup {
			t.Fatalf("test bug: expected deliveries repeat key %s", d.Key)
		}
		wantBy[d.Key] = d
	}
	seen := make(map[string]int, len(got))
	bad := 0
	for _, d := range got {
		seen[d.Key]++
		w, ok := wantBy[d.Key]
		switch {
		case seen[d.Key] > 1:
			bad++
			if bad <= 5 {
				t.Errorf("duplicate delivery (seen %d times): %s %s", seen[d.Key], d.QueueID, d.Recipient)
			}
		case !ok:
			bad++
			if bad <= 5 {
				t.Errorf("unexpected delivery: %+v", d)
			}
		case !reflect.DeepEqual(d, w):
			bad++
			if bad <= 5 {
				t.Errorf("delivery differs from a clean pass:\n got %+v\nwant %+v", flFmt(d), flFmt(w))
			}
		}
	}
	missing := 0
	for _, w := range want {
		if seen[w.Key] == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("lost delivery: %s %s", w.QueueID, w.Recipient)
			}
		}
	}
	if bad+missing > 0 {
		t.Fatalf("%d stored deliveries, %d expected: %d wrong or duplicated, %d lost", len(got), len(want), bad, missing)
	}
}

func flFmt(d delivery.Delivery) string {
	tls := "nil"
	if d.TLS != nil {
		tls = fmt.Sprint(*d.TLS)
	}
	return fmt.Sprintf("{%s %s %s %s tls=%s %s %s}", d.Time.Format(time.RFC3339Nano), d.QueueID, d.Recipient, d.Status, tls, d.TLSTrust, d.TLSProtocol)
}

// flAppend appends s to the file at path, creating it.
func flAppend(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// flCopy copies src to dst as logrotate's copytruncate does before it
// truncates src.
func flCopy(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// logBuffer collects a follower's log output.
type logBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	notify chan struct{} // if set, signalled after each write
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	n, err := l.buf.Write(p)
	l.mu.Unlock()
	if l.notify != nil {
		select {
		case l.notify <- struct{}{}:
		default:
		}
	}
	return n, err
}

func (l *logBuffer) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), msg)
}

func newLogBuffer() (*logBuffer, *slog.Logger) {
	lb := &logBuffer{}
	return lb, slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestFollowPartialLineHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	whole := flLines(0, 3, false)
	cut := len(flLines(0, 2, false)) + 40 // inside the third line
	flAppend(t, path, whole[:cut])
	db := newFollowDB()
	h := startFollow(t, path, db, Checkpoint{}, nil, nil)
	h.poll()
	want2, _ := flCleanPass(flLines(0, 2, false))
	flCompare(t, db.deliveries(), want2)
	if cp := db.checkpoint(t); cp.Offset != int64(len(flLines(0, 2, false))) {
		t.Fatalf("checkpoint offset %d, want %d (just past the last complete line)", cp.Offset, len(flLines(0, 2, false)))
	}
	// Still no newline: the partial line stays held, however often we poll.
	flAppend(t, path, whole[cut:len(whole)-1])
	h.poll()
	flCompare(t, db.deliveries(), want2)
	flAppend(t, path, "\n")
	h.poll()
	want3, _ := flCleanPass(whole)
	flCompare(t, db.deliveries(), want3)
	if cp := db.checkpoint(t); cp.Offset != int64(len(whole)) || cp.Path != path || cp.FirstLineHash != hashHex([]byte(whole[:strings.IndexByte(whole, '\n')+1])) {
		t.Fatalf("checkpoint %+v: want offset %d, path %s and the hash of the first line", cp, len(whole), path)
	}
	if err := h.stop(); err != nil {
		t.Fatalf("Run after cancel: %v, want nil", err)
	}
}

func TestFollowRenameRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	a := flLines(0, 4, true)
	late := flLines(4, 2, true)
	last := flDelivery(900, 7, "sent") // the old file ends without a newline
	b := flLines(10, 3, true)
	flAppend(t, path, a)
	db := newFollowDB()
	lb, log := newLogBuffer()
	h := startFollow(t, path, db, Checkpoint{}, log, nil)
	oldIno := db.checkpoint(t).Ino

	// logrotate renames and creates; the syslog daemon writes two more
	// lines to the old file before it reopens.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	flAppend(t, path, b)
	flAppend(t, path+".1", late)
	h.poll() // the old file grew: keep reading it
	flAppend(t, path+".1", last)
	h.poll() // grew again
	h.pollUntil(3, "switched to the new file", func() bool { return db.checkpoint(t).Ino != oldIno })

	want, _ := flCleanPass(a + late + last + "\n" + b)
	flCompare(t, db.deliveries(), want)
	cp := db.checkpoint(t)
	if cp.Offset != int64(len(b)) {
		t.Fatalf("checkpoint offset %d, want %d in the new file", cp.Offset, len(b))
	}
	if n := lb.count("log file rotated; following the new file"); n != 1 {
		t.Fatalf("rotation logged %d times, want 1", n)
	}
}

func TestFollowCopytruncate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		copyName string // "" = no copy: the unread tail is lost
		newLines int    // lines written after truncation, before the next poll
	}{
		{"copy numbered", "mail.log.1", 2},
		{"copy dated, truncated file regrew past the offset", "mail.log-20251128", 40},
		{"no copy", "", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "mail.log")
			a1, a2 := flLines(0, 3, true), flLines(3, 3, true)
			b := flLines(20, tc.newLines, true)
			// The follower has read a1 and holds the start of a2.
			const held = 30
			flAppend(t, path, a1+a2[:held])
			db := newFollowDB()
			lb, log := newLogBuffer()
			h := startFollow(t, path, db, Checkpoint{}, log, nil)
			flAppend(t, path, a2[held:]) // not read before the rotation
			if tc.copyName != "" {
				flCopy(t, path, filepath.Join(dir, tc.copyName))
			}
			// A compressed older copy with the same first line must not
			// be read.
			flCopy(t, path, filepath.Join(dir, "mail.log.2.gz"))
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			flAppend(t, path, b)
			if tc.newLines > 6 && int64(len(b)) <= int64(len(a1)) {
				t.Fatal("test bug: new content should outgrow the old offset")
			}
			h.poll()
			wantContent := a1 + a2 + b
			if tc.copyName == "" {
				wantContent = a1 + b
				if lb.count("no rotated copy with its first line found") != 1 {
					t.Errorf("missing warning about lost bytes; log:\n%s", lb.buf.String())
				}
				if lb.count(fmt.Sprintf("unread_bytes_at_least=%d", held)) != 1 {
					t.Errorf("warning does not say that the %d held bytes were lost; log:\n%s", held, lb.buf.String())
				}
			}
			want, _ := flCleanPass(wantContent)
			flCompare(t, db.deliveries(), want)
			if cp := db.checkpoint(t); cp.Offset != int64(len(b)) {
				t.Fatalf("checkpoint offset %d, want %d", cp.Offset, len(b))
			}
		})
	}
}

func TestFollowDeleteRecreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	a, b := flLines(0, 3, true), flLines(3, 3, true)
	flAppend(t, path, a)
	db := newFollowDB()
	lb, log := newLogBuffer()
	h := startFollow(t, path, db, Checkpoint{}, log, nil)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		h.poll()
	}
	if n := lb.count("log file is gone"); n != 1 {
		t.Fatalf("missing file logged %d times over 3 polls, want once", n)
	}
	flAppend(t, path, b)
	h.pollUntil(3, "following the new file", func() bool { return len(db.deliveries()) == 6 })
	want, _ := flCleanPass(a + b)
	flCompare(t, db.deliveries(), want)
}

func TestFollowNotExistYet(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	db := newFollowDB()
	lb, log := newLogBuffer()
	h := startFollow(t, path, db, Checkpoint{}, log, nil)
	for range 3 {
		h.poll()
	}
	if n := lb.count("log file does not exist"); n != 1 {
		t.Fatalf("missing file logged %d times, want once", n)
	}
	if got := db.deliveries(); len(got) != 0 {
		t.Fatalf("deliveries from a missing file: %v", got)
	}
	a := flLines(0, 2, true)
	flAppend(t, path, a)
	h.poll()
	want, _ := flCleanPass(a)
	flCompare(t, db.deliveries(), want)
}

// TestFollowRestart stops a follower, changes the log as logrotate would
// while it is stopped, and restarts it from the stored checkpoint. The first
// run always stops between a TLS line and its delivery, so the restored
// correlator state is checked too.
func TestFollowRestart(t *testing.T) {
	a1 := flLines(0, 3, true) + flTLS(50, 101, 51) + "\n"
	a2 := flDelivery(51, 101, "sent") + "\n" + flLines(30, 2, true)
	b := flLines(40, 3, true)
	for _, tc := range []struct {
		name    string
		down    func(t *testing.T, dir, path string) // what happens while stopped
		want    string
		lost    bool // a warning about lost lines is expected
		missing bool // Path is missing at restart; b appears later
	}{
		{"file grew", func(t *testing.T, dir, path string) {
			flAppend(t, path, a2+b)
		}, a1 + a2 + b, false, false},
		{"renamed", func(t *testing.T, dir, path string) {
			flAppend(t, path, a2)
			os.Rename(path, path+".1")
			flAppend(t, path, b)
		}, a1 + a2 + b, false, false},
		{"renamed, new file not there yet", func(t *testing.T, dir, path string) {
			flAppend(t, path, a2)
			os.Rename(path, path+"-20251128")
		}, a1 + a2 + b, false, true},
		{"copytruncate", func(t *testing.T, dir, path string) {
			flAppend(t, path, a2)
			flCopy(t, path, path+".0")
			os.Truncate(path, 0)
			flAppend(t, path, b)
		}, a1 + a2 + b, false, false},
		{"deleted and recreated", func(t *testing.T, dir, path string) {
			flAppend(t, path, a2)
			os.Remove(path)
			flAppend(t, path, b)
		}, a1 + b, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "mail.log")
			flAppend(t, path, a1)
			db := newFollowDB()
			cp := flRunOnce(t, path, db)
			if cp.Offset != int64(len(a1)) {
				t.Fatalf("first run checkpoint offset %d, want %d", cp.Offset, len(a1))
			}
			tc.down(t, dir, path)
			lb, log := newLogBuffer()
			h2 := startFollow(t, path, db, cp, log, nil)
			if tc.missing {
				flAppend(t, path, b)
			}
			want, wantStats := flCleanPass(tc.want)
			h2.pollUntil(3, "caught up", func() bool { return len(db.deliveries()) >= len(want) })
			flCompare(t, db.deliveries(), want)
			if got := db.stats; got != wantStats {
				t.Errorf("stats %+v, want %+v (restored with the state)", got, wantStats)
			}
			if got := lb.count("lost"); (got > 0) != tc.lost {
				t.Errorf("warnings about lost lines: %d, want them: %v; log:\n%s", got, tc.lost, lb.buf.String())
			}
		})
	}
}

// TestFollowRestartWhileOldFileWritten restarts the follower just after a
// rename rotation, while the syslog daemon has not reopened yet and keeps
// appending to the renamed file: those lines must not be lost.
func TestFollowRestartWhileOldFileWritten(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	a, late1, late2, b := flLines(0, 3, true), flLines(3, 2, true), flLines(5, 2, true), flLines(7, 3, true)
	flAppend(t, path, a)
	db := newFollowDB()
	flRunOnce(t, path, db)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	flAppend(t, path, "") // logrotate's "create"
	flAppend(t, path+".1", late1)
	lb, log := newLogBuffer()
	h2 := startFollow(t, path, db, db.checkpoint(t), log, nil)
	flAppend(t, path+".1", late2) // still not reopened
	h2.poll()
	flAppend(t, path, b) // reopened
	h2.pollUntil(3, "caught up", func() bool { return len(db.deliveries()) == 10 })
	want, _ := flCleanPass(a + late1 + late2 + b)
	flCompare(t, db.deliveries(), want)
	if lb.count("resuming the rotated log file") != 1 {
		t.Errorf("log:\n%s", lb.buf.String())
	}
}

func TestFollowLongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	first := flLines(0, 1, true)
	long := flDelivery(77, 9, "sent") + " " + strings.Repeat("x", 10<<20)
	next := flLines(1, 1, true)
	// The long line arrives in two parts, so its discarding spans polls.
	flAppend(t, path, first+long[:5<<20])
	db := newFollowDB()
	h := startFollow(t, path, db, Checkpoint{}, nil, func(f *Follower) { f.MaxLine = 1 << 20 })
	flAppend(t, path, long[5<<20:]+"\n"+next)
	h.poll()
	want, _ := flCleanPass(first + next)
	flCompare(t, db.deliveries(), want)
	cp := db.checkpoint(t)
	if total := int64(len(first + long + "\n" + next)); cp.Offset != total {
		t.Fatalf("checkpoint offset %d, want %d: the skipped line must be accounted for exactly", cp.Offset, total)
	}
	if s := db.stats; s.Lines != 5 || s.Skipped != 1 {
		t.Fatalf("stats %+v, want 5 lines of which 1 skipped", s)
	}
	// A restart from this checkpoint reads nothing again.
	h.stop()
	h2 := startFollow(t, path, db, cp, nil, nil)
	h2.poll()
	flCompare(t, db.deliveries(), want)
}

// TestFollowBatchesExact checks that every checkpoint describes exactly the
// lines whose deliveries were committed up to it: a clean pass over the file
// up to each checkpoint's offset yields exactly the rows stored so far, and
// the same correlator state.
func TestFollowBatchesExact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	content := flLines(0, 40, true) + flLines(100, 15, false)
	flAppend(t, path, content)
	db := newFollowDB()
	var checks []string
	db.hook = func(db *followDB, b Batch) (bool, error) {
		if len(b.Deliveries) > 4 {
			checks = append(checks, fmt.Sprintf("batch of %d deliveries exceeds MaxBatch", len(b.Deliveries)))
		}
		prefix := content[:b.Checkpoint.Offset]
		want, _ := flCleanPass(prefix)
		if n := len(db.rows) + len(b.Deliveries); n != len(want) {
			checks = append(checks, fmt.Sprintf("at offset %d: %d rows, a clean pass gives %d", b.Checkpoint.Offset, n, len(want)))
		}
		c := flNewCorrelator()
		flFeedAll(c, prefix)
		if st, _ := c.MarshalState(); !bytes.Equal(st, b.Checkpoint.State) {
			checks = append(checks, fmt.Sprintf("at offset %d: state differs from a clean pass", b.Checkpoint.Offset))
		}
		return true, nil
	}
	startFollow(t, path, db, Checkpoint{}, nil, func(f *Follower) { f.MaxBatch = 4 })
	want, _ := flCleanPass(content)
	flCompare(t, db.deliveries(), want)
	db.mu.Lock()
	n := len(db.batches)
	db.mu.Unlock()
	if n < len(want)/4 {
		t.Fatalf("%d batches for %d deliveries with MaxBatch 4", n, len(want))
	}
	for _, c := range checks {
		t.Error(c)
	}
}

func flFeedAll(c *Correlator, content string) {
	for _, l := range strings.SplitAfter(content, "\n") {
		if strings.HasSuffix(l, "\n") {
			c.Feed([]byte(l[:len(l)-1]))
		}
	}
}

// TestFollowBatchEvery checks the time-based commit while a long read is
// still going on: BatchEvery zero-ish forces a commit after every chunk.
func TestFollowBatchEvery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	content := flLines(0, 3000, false) // several read chunks
	flAppend(t, path, content)
	db := newFollowDB()
	startFollow(t, path, db, Checkpoint{}, nil, func(f *Follower) { f.BatchEvery = time.Nanosecond })
	want, _ := flCleanPass(content)
	flCompare(t, db.deliveries(), want)
	db.mu.Lock()
	n := len(db.batches)
	db.mu.Unlock()
	if chunks := len(content) / readChunk; n < chunks {
		t.Fatalf("%d commits, want at least one per %d-byte chunk (%d)", n, readChunk, chunks)
	}
}

// TestFollowSettle checks that with SettleFor the end of the file no longer
// commits at once, and that nothing read waits past a file switch or the
// end of Run.
func TestFollowSettle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	a, b, c := flLines(0, 3, false), flLines(3, 3, false), flLines(6, 3, false)
	flAppend(t, path, a)
	db := newFollowDB()
	h := startFollow(t, path, db, Checkpoint{}, nil, func(f *Follower) { f.SettleFor = time.Hour })
	flAppend(t, path, b)
	h.poll()
	h.poll()
	if n := len(db.deliveries()); n != 0 {
		t.Fatalf("%d deliveries committed at the end of the file before SettleFor", n)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	flAppend(t, path, c)
	ab, _ := flCleanPass(a + b)
	h.pollUntil(10, "switched to the new file", func() bool { return len(db.deliveries()) == len(ab) })
	flCompare(t, db.deliveries(), ab)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	all, _ := flCleanPass(a + b + c)
	flCompare(t, db.deliveries(), all)
	if cp := db.checkpoint(t); cp.Offset != int64(len(c)) {
		t.Errorf("final checkpoint at offset %d, want the end of the new file (%d)", cp.Offset, len(c))
	}
}

func TestFollowReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	a, b, c := flLines(0, 2, true), flLines(2, 2, true), flLines(4, 2, true)
	flAppend(t, path, a)
	db := newFollowDB()
	lb, log := newLogBuffer()
	h := startFollow(t, path, db, Checkpoint{}, log, nil)
	flAppend(t, path, b)
	h.f.Reopen()
	h.pollUntil(2, "reopened", func() bool { return lb.count("reopening log file") == 1 })
	// Renamed, then reopen before the next poll: the old file is found
	// among the siblings and read to its end.
	flAppend(t, path, c[:len(c)/2])
	os.Rename(path, path+".1")
	flAppend(t, path+".1", c[len(c)/2:])
	h.f.Reopen()
	h.pollUntil(2, "reopened twice", func() bool { return lb.count("reopening log file") == 2 })
	d := flLines(6, 2, true)
	flAppend(t, path, d)
	h.pollUntil(2, "reading the new file", func() bool { return len(db.deliveries()) == 8 })
	want, _ := flCleanPass(a + b + c + d)
	flCompare(t, db.deliveries(), want)
}

func TestFollowCommitError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	flAppend(t, path, flLines(0, 2, true))
	boom := errors.New("database is locked")
	f := &Follower{Path: path, Waker: NewTestWaker()}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	err := f.Run(ctx, Checkpoint{}, func(context.Context, Batch) error { return boom })
	if !errors.Is(err, boom) || !errors.Is(err, ErrCommit) {
		t.Fatalf("Run = %v, want the commit error wrapped in ErrCommit", err)
	}
	if err := (&Follower{}).Run(context.Background(), Checkpoint{}, nil); !errors.Is(err, ErrNoPath) {
		t.Fatalf("Run without path = %v, want ErrNoPath", err)
	}
	bad := Checkpoint{Path: path, Offset: 10, State: []byte(`{not json`)}
	if err := f.Run(ctx, bad, func(context.Context, Batch) error { return nil }); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("Run with bad state = %v, want ErrBadCheckpoint", err)
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	for _, cp := range []Checkpoint{
		{},
		{Path: "/var/log/mail.log", Dev: 2049, Ino: 1 << 40, Offset: 123456789, FirstLineHash: hashHex([]byte("x\n")), State: []byte(`{"version":1,"procs":[]}`)},
		{Cursor: "s=5c4d;i=1a2b19;b=a1b2;m=2bfc1c2a;t=644aba2e938c3;x=2f75723440d558e3", State: []byte{0, 1, 2, 0xff}},
	} {
		b := cp.Marshal()
		got, err := UnmarshalCheckpoint(b)
		if err != nil {
			t.Fatalf("UnmarshalCheckpoint(%s): %v", b, err)
		}
		if !reflect.DeepEqual(got, cp) && !(cp.IsZero() && got.IsZero()) {
			t.Fatalf("round trip of %+v gave %+v (%s)", cp, got, b)
		}
	}
	if cp, err := UnmarshalCheckpoint(nil); err != nil || !cp.IsZero() {
		t.Fatalf("UnmarshalCheckpoint(nil) = %+v, %v; want zero, nil", cp, err)
	}
	for _, bad := range []string{
		`{`, `[]`, `{"v":2,"offset":1}`, `{"offset":1}`, `{"v":1,"offset":-1}`,
		`{"v":1,"first_line_sha256":"xyz"}`, `{"v":1,"bogus":1}`,
		`{"v":1,"state":{},"state_b64":"AA=="}`,
	} {
		if _, err := UnmarshalCheckpoint([]byte(bad)); !errors.Is(err, ErrBadCheckpoint) {
			t.Errorf("UnmarshalCheckpoint(%s) = %v, want ErrBadCheckpoint", bad, err)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("error is not one line: %q", err)
		}
	}
}

func FuzzCheckpoint(f *testing.F) {
	f.Add([]byte(Checkpoint{Path: "/l", Dev: 1, Ino: 2, Offset: 3, FirstLineHash: hashHex(nil), State: []byte(`{}`)}.Marshal()))
	f.Add([]byte(`{"v":1,"state_b64":"AAE="}`))
	f.Add([]byte(`{"v":1,"offset":-5}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := UnmarshalCheckpoint(b)
		if err != nil {
			return
		}
		again, err := UnmarshalCheckpoint(cp.Marshal())
		if err != nil || !bytes.Equal(again.Marshal(), cp.Marshal()) {
			t.Fatalf("re-marshal of %+v: %+v, %v", cp, again, err)
		}
	})
}

func TestFollowRotatedNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"mail.log.1", true}, {"mail.log.0", true}, {"mail.log-20251128", true},
		{"mail.log.1.gz", false}, {"mail.log-20251128.xz", false}, {"mail.log.2.zst", false},
		{"mail.log", false}, {"mail.logger", false}, {"mail.err", false}, {"xmail.log.1", false},
	} {
		if got := isRotatedName("mail.log", tc.name); got != tc.want {
			t.Errorf("isRotatedName(mail.log, %s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCheckpointFingerprint(t *testing.T) {
	long := strings.Repeat("a", fingerprintMax+10)
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"partial first line", ""},
		{"line one\nline two\n", hashHex([]byte("line one\n"))},
		{"line one\npartial", hashHex([]byte("line one\n"))},
		{long, hashHex([]byte(long[:fingerprintMax]))},
		{long + "\nmore\n", hashHex([]byte(long[:fingerprintMax]))},
	} {
		if got := fingerprintOf([]byte(tc.in)); got != tc.want {
			t.Errorf("fingerprintOf(%.20q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestFollowCrashSafety appends a realistic log while rotating it twice
// (rename, then copytruncate) and kills the follower at 50 random commits,
// at up to 50 random moments between polls, and sometimes right after a
// rotation. A kill loses every batch not committed;
// the follower restarts from the stored checkpoint. In the end the store
// must hold exactly the deliveries of one clean pass over the whole log.
func TestFollowCrashSafety(t *testing.T) {
	n := 200_000
	if testing.Short() {
		n = 60_000
	}
	const crashes = 50
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	var logBuf bytes.Buffer
	if _, err := gen.Log(&logBuf, gen.LogConfig{Seed: seed, Lines: n}); err != nil {
		t.Fatal(err)
	}
	content := logBuf.String()
	lines := strings.Split(strings.TrimSuffix(content, "\n"), "\n")
	n = len(lines)
	want, wantStats := flCleanPass(content)

	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	db := newFollowDB()

	// Crash points: after so many stored deliveries, either losing the
	// commit that crosses the point or right after storing it.
	// One point in each of 50 equal stretches, more than a batch after
	// the stretch starts, so that each point kills its own run.
	points := make(map[int]bool) // point -> crash before storing
	stretch := len(want) / crashes
	maxBatch := min(256, stretch/3)
	if maxBatch < 16 {
		t.Fatalf("test bug: %d deliveries are too few for %d crash points", len(want), crashes)
	}
	for k := range crashes {
		points[k*stretch+maxBatch+1+rng.IntN(stretch-maxBatch-1)] = rng.IntN(2) == 0
	}
	var (
		crashMu  sync.Mutex
		crashNow func() // kills the current run
		killed   int
	)
	crash := func(db *followDB) {
		db.dead = true
		killed++
		crashMu.Lock()
		crashNow()
		crashMu.Unlock()
	}
	db.hook = func(db *followDB, b Batch) (bool, error) {
		before, after := len(db.rows), len(db.rows)+len(b.Deliveries)
		for p, lose := range points {
			if before < p && p <= after {
				delete(points, p)
				if lose {
					crash(db)
					return false, errCrashed
				}
				db.store(b)
				crash(db)
				return false, nil
			}
		}
		return true, nil
	}

	// The writer appends the log in pieces of random size (so the
	// follower often finds half a line), one piece per tick of the
	// driver, concurrently with the follower's polls. It rotates at line
	// boundaries. Before a rotation it waits until the follower has moved
	// to the current file, so at most one rotation is pending: see the
	// Follower doc.
	const maxPiece = 128 << 10
	rot1 := len(strings.Join(lines[:n/3], "\n")) + 1
	rot2 := len(strings.Join(lines[:2*n/3], "\n")) + 1
	ticks := make(chan struct{}, 1)
	rotations := make(chan string, 2)
	writerDone := make(chan error, 1)
	go func() {
		writerDone <- func() error {
			rng := rand.New(rand.NewPCG(seed, 2))
			w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer func() { w.Close() }()
			waitFor := func(ino uint64) {
				db.mu.Lock()
				defer db.mu.Unlock()
				for {
					cp, _ := UnmarshalCheckpoint(db.cp)
					if cp.Ino == ino {
						return
					}
					db.changed.Wait()
				}
			}
			ino := func() uint64 {
				fi, _ := w.Stat()
				_, i := fileID(fi)
				return i
			}
			for pos := 0; pos < len(content); {
				<-ticks
				end := min(pos+1+rng.IntN(maxPiece), len(content))
				for _, r := range []int{rot1, rot2} {
					if pos < r && end > r {
						end = r
					}
				}
				if _, err := w.WriteString(content[pos:end]); err != nil {
					return err
				}
				pos = end
				switch pos {
				case rot1:
					waitFor(ino())
					w.Close()
					if err := os.Rename(path, path+"-1"); err != nil {
						return err
					}
					if w, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err != nil {
						return err
					}
					rotations <- "rename"
				case rot2:
					waitFor(ino())
					b, err := os.ReadFile(path)
					if err != nil {
						return err
					}
					if err := os.WriteFile(path+"-2", b, 0o644); err != nil {
						return err
					}
					if err := w.Truncate(0); err != nil {
						return err
					}
					rotations <- "copytruncate"
				}
			}
			return nil
		}()
	}()
	// Kills between polls: about crashes of them over the run.
	pollKillOdds := max(len(content)/(maxPiece/2)/crashes, 1)

	// The driver: run, poll, and after a crash restart from the store.
	lb, log := newLogBuffer()
	deadline := time.Now().Add(3 * testTimeout)
	writing := true
	runs, pollKills, rotationKills := 0, 0, 0
	for {
		cp := db.checkpoint(t)
		w := NewTestWaker()
		f := &Follower{Path: path, Waker: w, Logger: log, NewCorrelator: flNewCorrelator, MaxBatch: maxBatch, BatchEvery: 50 * time.Millisecond}
		ctx, cancel := context.WithCancel(context.Background())
		crashMu.Lock()
		crashNow = cancel
		crashMu.Unlock()
		done := make(chan error, 1)
		go func() { done <- f.Run(ctx, cp, db.commit) }()
		runs++
		stopped := false
		for !stopped {
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("not done in time: %d runs, writer still writing: %v", runs, writing)
			}
			select {
			case <-rotations:
				// Kill it before it may have noticed, or let it
				// see the rotation while running.
				if rng.IntN(2) == 0 {
					rotationKills++
					db.mu.Lock()
					crash(db)
					db.mu.Unlock()
				}
			default:
			}
			if writing {
				select {
				case err := <-writerDone:
					if err != nil {
						t.Fatalf("writer: %v", err)
					}
					writing = false
				default:
				}
			}
			select {
			case ticks <- struct{}{}:
			default:
			}
			pctx, pcancel := context.WithTimeout(ctx, testTimeout)
			err := w.Poll(pctx)
			pcancel()
			if err != nil {
				if ctx.Err() == nil {
					cancel()
					t.Fatalf("poll: %v (run ended: %v)", err, <-done)
				}
				stopped = true
				break
			}
			if !writing && flCaughtUp(t, db, path) {
				cancel()
				stopped = true
				break
			}
			// Also kill it between polls now and then, when all it
			// read is committed but it may hold half a line.
			if pollKills < crashes && rng.IntN(pollKillOdds) == 0 {
				pollKills++
				db.mu.Lock()
				crash(db)
				db.mu.Unlock()
			}
		}
		err := <-done
		db.mu.Lock()
		crashed := db.dead
		db.dead = false
		db.mu.Unlock()
		if !crashed {
			if err != nil {
				t.Fatalf("clean stop: %v", err)
			}
			break
		}
	}
	if want := crashes + pollKills + rotationKills; killed != want {
		t.Fatalf("%d kills happened, want %d", killed, want)
	}
	t.Logf("%d lines, %d deliveries, %d runs, %d kills between polls, %d after rotations", n, len(want), runs, pollKills, rotationKills)

	// The rotated files and the live one, in order, are the whole log.
	var all []byte
	for _, p := range []string{path + "-1", path + "-2", path} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if string(all) != content {
		t.Fatal("test bug: rotated files do not add up to the log")
	}
	flCompare(t, db.deliveries(), want)
	if db.stats != wantStats {
		t.Errorf("final stats %+v, want %+v", db.stats, wantStats)
	}
	if n := lb.count("level=WARN"); n > 0 {
		t.Errorf("%d warnings; log:\n%s", n, lb.buf.String())
	}
	// Each rotation is seen while running or, after the kill that
	// follows it, on restart.
	renamed := lb.count("log file rotated; following the new file")
	truncated := lb.count("log file truncated")
	recovered := lb.count("reading the rest of a rotated log file") + lb.count("resuming the rotated log file")
	if renamed+truncated+recovered < 2 {
		t.Errorf("rotations seen: %d by rename, %d by truncation, %d on restart; want 2", renamed, truncated, recovered)
	}
	t.Logf("rotations seen: %d by rename, %d by truncation, %d on restart", renamed, truncated, recovered)
}

// flCaughtUp reports whether the store's checkpoint is at the end of the
// live file.
func flCaughtUp(t *testing.T, db *followDB, path string) bool {
	cp := db.checkpoint(t)
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	_, ino := fileID(fi)
	return cp.Ino == ino && cp.Offset == fi.Size()
}

var _ io.Writer = (*logBuffer)(nil)

// TestFollowRestartAfterTwoRotations: while the follower was stopped the log
// was rotated twice. The checkpointed file is found and finished, then the
// file rotated after it, then the file at Path: nothing is lost. When a
// later rotation has compressed the checkpointed file (gzip), it is found
// by its first line and read from the offset, and so are the files rotated
// after it, compressed or not. A file in a format the follower cannot read
// is named in a warning with the command that recovers it.
func TestFollowRestartAfterTwoRotations(t *testing.T) {
	a1 := flLines(0, 3, true)
	a2 := flLines(10, 2, true)
	b := flLines(20, 3, true)
	c := flLines(30, 2, true)
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	flAppend(t, path, a1)
	db := newFollowDB()
	cp := flRunOnce(t, path, db)

	// Day 1: a2 written, rotated; b written. Day 2: rotated again; c.
	base := time.Date(2025, 11, 20, 6, 25, 0, 0, time.UTC)
	flAppend(t, path, a2)
	os.Rename(path, path+".1")
	flAppend(t, path, b)
	os.Rename(path+".1", path+".2")
	os.Rename(path, path+".1")
	flAppend(t, path, c)
	os.Chtimes(path+".2", base, base)
	os.Chtimes(path+".1", base.Add(24*time.Hour), base.Add(24*time.Hour))

	lb, log := newLogBuffer()
	h2 := startFollow(t, path, db, cp, log, nil)
	want, _ := flCleanPass(a1 + a2 + b + c)
	h2.pollUntil(3, "caught up", func() bool { return len(db.deliveries()) >= len(want) })
	flCompare(t, db.deliveries(), want)
	if n := lb.count("level=WARN"); n > 0 {
		t.Errorf("%d warnings; log:\n%s", n, lb.buf.String())
	}
	if !strings.Contains(lb.buf.String(), "rotated while the follower was stopped") {
		t.Errorf("the file in between was not read as such; log:\n%s", lb.buf.String())
	}
	if err := h2.stop(); err != nil {
		t.Fatal(err)
	}

	// Another stop; more lines in the checkpointed file (the one at Path),
	// which is rotated and compressed; another file, d, is rotated and
	// compressed after it; e is at Path.
	cp = db.checkpoint(t)
	if fi, err := os.Stat(path); err != nil {
		t.Fatal(err)
	} else if dev, ino := fileID(fi); dev != cp.Dev || ino != cp.Ino {
		t.Fatalf("checkpoint is not at %s", path)
	}
	c2 := flLines(40, 2, true)
	d := flLines(50, 3, true)
	e := flLines(60, 2, true)
	flAppend(t, path, c2)
	flRotate(t, path, path+".3.gz", true, base.Add(48*time.Hour))
	flAppend(t, path, d)
	flRotate(t, path, path+".4.gz", true, base.Add(72*time.Hour))
	flAppend(t, path, e)
	lb3, log3 := newLogBuffer()
	h3 := startFollow(t, path, db, cp, log3, nil)
	want, _ = flCleanPass(a1 + a2 + b + c + c2 + d + e)
	h3.pollUntil(3, "caught up", func() bool { return len(db.deliveries()) >= len(want) })
	flCompare(t, db.deliveries(), want)
	if n := lb3.count("level=WARN"); n > 0 {
		t.Errorf("%d warnings; log:\n%s", n, lb3.buf.String())
	}
	if err := h3.stop(); err != nil {
		t.Fatal(err)
	}

	// The checkpointed file compressed with something else (here: only by
	// name): it cannot be placed, and the warning names every rotated file.
	cp = db.checkpoint(t)
	flAppend(t, path, flLines(70, 2, true))
	xzName := path + ".5.xz"
	flRotate(t, path, xzName, false, base.Add(96*time.Hour))
	lb4, log4 := newLogBuffer()
	h4 := startFollow(t, path, db, cp, log4, nil)
	h4.waitIdle()
	out := lb4.buf.String()
	if !strings.Contains(out, "not found among rotated files") || !strings.Contains(out, "xzcat "+xzName+" | mailtls import -") || !strings.Contains(out, path+".3.gz") {
		t.Errorf("no warning naming %s and the other rotated files; log:\n%s", xzName, out)
	}
}

// TestFollowCatchUpCrashes: the follower crashes (its commit is lost) after
// every commit while it recovers rotated files on restart: the rest of the
// compressed checkpointed file, a plain file, a compressed one, then the
// file at Path. Each restart resumes from the last stored checkpoint; in
// the end every delivery is stored exactly once.
func TestFollowCatchUpCrashes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	a := flLines(0, 6, true)
	flAppend(t, path, a)
	db := newFollowDB()
	flRunOnce(t, path, db)
	base := time.Date(2025, 11, 20, 6, 25, 0, 0, time.UTC)
	a2, b, c, d := flLines(10, 7, true), flLines(20, 8, false), flLines(30, 9, true), flLines(40, 5, true)
	flAppend(t, path, a2)
	flRotate(t, path, path+".3.gz", true, base)
	flAppend(t, path, b)
	flRotate(t, path, path+".2", false, base.Add(time.Hour))
	flAppend(t, path, c)
	flRotate(t, path, path+".1.gz", true, base.Add(2*time.Hour))
	flAppend(t, path, d)
	want, _ := flCleanPass(a + a2 + b + c + d)

	restarts := 0
	for ; restarts < 100 && len(db.deliveries()) < len(want); restarts++ {
		db.mu.Lock()
		db.dead, db.hook = false, func(db *followDB, b Batch) (bool, error) {
			db.dead = true // this commit is stored; every later one is lost
			return true, nil
		}
		db.mu.Unlock()
		w := NewTestWaker()
		f := &Follower{Path: path, Waker: w, BatchEvery: time.Hour, MaxBatch: 2, NewCorrelator: flNewCorrelator}
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		done := make(chan error, 1)
		go func() { done <- f.Run(ctx, db.checkpoint(t), db.commit) }()
		idle := make(chan error, 1)
		go func() { idle <- w.WaitIdle(ctx) }()
		var err error
		select {
		case err = <-done: // crashed
			cancel()
			<-idle
		case ierr := <-idle: // caught up
			if ierr != nil {
				t.Fatalf("restart %d: never idle: %v", restarts, ierr)
			}
			cancel()
			err = <-done
		}
		if err != nil && !errors.Is(err, errCrashed) {
			t.Fatalf("restart %d: %v", restarts, err)
		}
	}
	if restarts < 5 {
		t.Fatalf("caught up after %d restarts; the test wants crashes in every file", restarts)
	}
	flCompare(t, db.deliveries(), want)
	t.Logf("%d restarts", restarts)
}

func TestRecoverCommand(t *testing.T) {
	for _, c := range []struct {
		files []string
		want  string
	}{
		{[]string{"/l/m.2.gz", "/l/m.1"}, "mailtls import /l/m.2.gz /l/m.1"},
		{[]string{"/l/m.3.xz", "/l/m.2.gz", "/l/m.1"}, "xzcat /l/m.3.xz | mailtls import - && mailtls import /l/m.2.gz /l/m.1"},
		{[]string{"/l/m.2.bz2", "/l/m.1.ZST"}, "bzcat /l/m.2.bz2 | mailtls import - && zstdcat /l/m.1.ZST | mailtls import -"},
	} {
		if got := recoverCommand(c.files); got != c.want {
			t.Errorf("recoverCommand(%q) = %q, want %q", c.files, got, c.want)
		}
	}
}

// TestFollowCatchUpSkipsCorruptGzip: a rotated gzip file cut short (a full
// disk during compression) must not keep the follower from the files after
// it and the live log; what it could not read is named in a warning with
// the import command.
func TestFollowCatchUpSkipsCorruptGzip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	a := flLines(0, 3, true)
	flAppend(t, path, a)
	db := newFollowDB()
	cp := flRunOnce(t, path, db)
	base := time.Date(2025, 11, 20, 6, 25, 0, 0, time.UTC)
	os.Rename(path, path+".3")
	os.Chtimes(path+".3", base, base)
	b := flLines(10, 40, true)
	gz := flGzip([]byte(b))
	cut := gz[:len(gz)/2]
	if err := os.WriteFile(path+".2.gz", cut, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(path+".2.gz", base.Add(time.Hour), base.Add(time.Hour))
	c := flLines(60, 3, true)
	flAppend(t, path+".1", c)
	os.Chtimes(path+".1", base.Add(2*time.Hour), base.Add(2*time.Hour))
	d := flLines(70, 2, true)
	flAppend(t, path, d)

	lb, log := newLogBuffer()
	h2 := startFollow(t, path, db, cp, log, nil)
	wantC, _ := flCleanPass(c)
	wantD, _ := flCleanPass(d)
	has := func(ws []delivery.Delivery) bool {
		got := map[string]bool{}
		for _, g := range db.deliveries() {
			got[g.Key] = true
		}
		for _, w := range ws {
			if !got[w.Key] {
				return false
			}
		}
		return true
	}
	h2.pollUntil(20, "past the corrupt file", func() bool { return has(wantC) && has(wantD) })
	out := lb.buf.String()
	if !strings.Contains(out, "cannot read the rest of a rotated log file") || !strings.Contains(out, "mailtls import "+path+".2.gz") {
		t.Errorf("no warning naming %s.2.gz; log:\n%s", path, out)
	}
	// Nothing twice: every key once.
	seen := map[string]bool{}
	for _, g := range db.deliveries() {
		if seen[g.Key] {
			t.Fatalf("delivery %s stored twice", g.QueueID)
		}
		seen[g.Key] = true
	}
}

// TestFollowLogsFirstSkipped: the first line the follower cannot read is
// logged once, quoted with control characters escaped; later ones are
// only counted.
func TestFollowLogsFirstSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	flAppend(t, path, flLines(0, 1, true)+"\x1b[2Jnot a log line\x00\n"+strings.Repeat("z", DefaultMaxLine+1)+"\n")
	db := newFollowDB()
	lb, log := newLogBuffer()
	h := startFollow(t, path, db, Checkpoint{}, log, nil)
	flAppend(t, path, "more garbage\n"+flLines(1, 1, true))
	h.poll()
	if s := db.stats; s.Skipped != 3 {
		t.Fatalf("stats %+v", s)
	}
	if n := lb.count("was not understood"); n != 1 {
		t.Errorf("logged %d times:\n%s", n, lb.buf.String())
	}
	if want := `line="\x1b[2Jnot a log line\x00"`; lb.count(want) != 1 {
		t.Errorf("log does not quote the line as %s:\n%s", want, lb.buf.String())
	}
}

// TestFollowRestartDuringCopytruncate: the follower stopped while reading a
// file rotated by rename (a, now mail.log.1); copytruncate then renames
// mail.log.1 to mail.log.2 and copies the file at Path (b) to mail.log.1,
// and the follower restarts before the truncation (the copy may still be
// being written). The copy is read as the file rotated after a; the file at
// Path, not truncated yet, holds the same lines: they must not be read a
// second time, and once it is truncated the lines written after it (c) are
// read, nothing twice, nothing lost.
func TestFollowRestartDuringCopytruncate(t *testing.T) {
	for _, partial := range []bool{false, true} {
		t.Run(fmt.Sprintf("partial copy %v", partial), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "mail.log")
			a1, a2 := flLines(0, 3, true), flLines(3, 3, true)
			b, c := flLines(20, 4, true), flLines(40, 2, true)
			flAppend(t, path, a1)
			db := newFollowDB()
			h := startFollow(t, path, db, Checkpoint{}, nil, nil)
			flAppend(t, path, a2)
			if err := os.Rename(path, path+".1"); err != nil {
				t.Fatal(err)
			}
			flAppend(t, path, b)
			h.poll() // reads a2 from the renamed file, which it keeps for a grace period
			if err := h.stop(); err != nil {
				t.Fatal(err)
			}
			if cp := db.checkpoint(t); cp.Offset != int64(len(a1+a2)) {
				t.Fatalf("test bug: checkpoint offset %d, want the end of the renamed file (%d)", cp.Offset, len(a1+a2))
			}
			cp := db.checkpoint(t)

			// copytruncate, up to the truncation.
			base := time.Now().Add(-time.Hour)
			if err := os.Rename(path+".1", path+".2"); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(path+".2", base, base)
			copied := b
			if partial {
				copied = b[:len(b)/2+7] // mid-line
			}
			if err := os.WriteFile(path+".1", []byte(copied), 0o644); err != nil {
				t.Fatal(err)
			}
			lb, log := newLogBuffer()
			h2 := startFollow(t, path, db, cp, log, nil)
			wantB, _ := flCleanPass(a1 + a2 + b)
			h2.pollUntil(rotationGracePolls+3, "caught up before the truncation", func() bool { return len(db.deliveries()) >= len(wantB) })
			for range rotationGracePolls + 2 { // past the grace period of the copy
				h2.poll()
			}
			flCompare(t, db.deliveries(), wantB)
			// The copy completes; the file at Path is truncated and grows.
			if err := os.WriteFile(path+".1", []byte(b), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			flAppend(t, path, c)
			want, _ := flCleanPass(a1 + a2 + b + c)
			h2.pollUntil(rotationGracePolls+3, "caught up after the truncation", func() bool { return len(db.deliveries()) >= len(want) })
			h2.poll()
			flCompare(t, db.deliveries(), want)
			if n := lb.count("level=WARN"); n > 0 {
				t.Errorf("%d warnings; log:\n%s", n, lb.buf.String())
			}
			if err := h2.stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFollowCopytruncateBeforeSwitch: the log is rotated by rename, and
// the new file is rotated by copytruncate while the follower still reads
// the renamed one (a syslog daemon writes it until told to reopen). The
// new file's lines are read from its copy before the truncated file: none
// lost, none twice. Without the copy, a warning says they are lost.
func TestFollowCopytruncateBeforeSwitch(t *testing.T) {
	for _, withCopy := range []bool{true, false} {
		t.Run(fmt.Sprintf("copy %v", withCopy), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "mail.log")
			a1, a2, a3 := flLines(0, 3, true), flLines(3, 3, true), flLines(6, 2, true)
			b, c := flLines(20, 4, true), flLines(40, 2, true)
			flAppend(t, path, a1)
			db := newFollowDB()
			lb, log := newLogBuffer()
			h := startFollow(t, path, db, Checkpoint{}, log, nil)
			if err := os.Rename(path, path+".1"); err != nil {
				t.Fatal(err)
			}
			flAppend(t, path, b)
			flAppend(t, path+".1", a2) // the renamed file is still written to
			h.poll()
			if err := os.Rename(path+".1", path+".2"); err != nil {
				t.Fatal(err)
			}
			flAppend(t, path+".2", a3)
			if withCopy {
				flCopy(t, path, path+".1")
			}
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			flAppend(t, path, c)
			for range rotationGracePolls + 3 {
				h.poll()
			}
			content := a1 + a2 + a3 + b + c
			if !withCopy {
				content = a1 + a2 + a3 + c
				if lb.count("no rotated copy with its first line found") != 1 {
					t.Errorf("no warning about the lost lines; log:\n%s", lb.buf.String())
				}
			}
			want, _ := flCleanPass(content)
			flCompare(t, db.deliveries(), want)
			if withCopy {
				if n := lb.count("level=WARN"); n > 0 {
					t.Errorf("%d warnings; log:\n%s", n, lb.buf.String())
				}
			}
			if err := h.stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
