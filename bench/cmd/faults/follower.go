package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailtls/mailtls/bench/internal/harness"
)

// followCase is one row of the follower table.
type followCase struct {
	name, what         string
	lines              int
	renames, copies    int
	deletes            int
	compressed         int
	kills              int
	expected, recorded int
	lost, dup, differ  int
	samples            []string
	notes              []string
	caughtUp           string
	commitErrs         int
	exitedOnItsOwn     int
	gaveUp             bool
	cmd                string
}

type followerResult struct {
	cases []*followCase
	gen   string
}

// event is something the log writer does at a moment of its run.
type event struct {
	at   time.Duration
	kind string // rename, copytruncate, delete-delayed, delete-immediate
}

// logWriter appends lines to path the way syslog and logrotate do.
type logWriter struct {
	path string
	f    *os.File
	rnd  *rand.Rand
	n    int // lines written
	fc   *followCase
	keep int
	// a rename or delayed delete: keep writing to the old file until then
	switchAt time.Time
	evlog    *os.File // what happened when, for post-mortems
	bytes    int64    // bytes written in all
	// windows are the periods in which the writer still wrote to a renamed
	// or deleted file.
	mu      sync.Mutex
	windows [][2]time.Time
	rotated chan string // receives each rotation's kind, if not nil
	// control receives "stop" and "start" events for the runner, which
	// acknowledges each once done.
	control chan control
}

type control struct {
	kind string
	done chan struct{}
}

func (w *logWriter) window(from, to time.Time) {
	w.mu.Lock()
	w.windows = append(w.windows, [2]time.Time{from, to})
	w.mu.Unlock()
}

// inWindow reports whether t fell in a period in which the writer still
// wrote to a renamed or deleted file.
func (w *logWriter) inWindow(t time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, win := range w.windows {
		if !t.Before(win[0]) && !t.After(win[1]) {
			return true
		}
	}
	return false
}

func (w *logWriter) note(format string, args ...any) {
	if w.evlog != nil {
		fmt.Fprintf(w.evlog, "%s line=%d byte=%d %s\n", time.Now().Format("15:04:05.000"), w.n, w.bytes, fmt.Sprintf(format, args...))
	}
}

func (w *logWriter) open() {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	must(err)
	w.f = f
}

func (w *logWriter) shift() {
	for _, sfx := range []string{"", ".gz"} {
		_ = os.Remove(fmt.Sprintf("%s.%d%s", w.path, w.keep+1, sfx))
		for i := w.keep; i >= 1; i-- {
			_ = os.Rename(fmt.Sprintf("%s.%d%s", w.path, i, sfx), fmt.Sprintf("%s.%d%s", w.path, i+1, sfx))
		}
	}
}

// compress gzips path.2 into path.2.gz as logrotate's delaycompress does,
// keeping its modification time.
func (w *logWriter) compress() {
	from := w.path + ".2"
	fi, err := os.Stat(from)
	must(err)
	data, err := os.ReadFile(from)
	must(err)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err = zw.Write(data)
	must(err)
	must(zw.Close())
	must(os.WriteFile(from+".gz", buf.Bytes(), 0o644))
	must(os.Chtimes(from+".gz", fi.ModTime(), fi.ModTime()))
	must(os.Remove(from))
}

func (w *logWriter) do(kind string) {
	w.note("%s", kind)
	if w.rotated != nil {
		defer func() {
			select {
			case w.rotated <- kind:
			default:
			}
		}()
	}
	switch kind {
	case "rename":
		// logrotate's create mode: rename, create the new file at once;
		// syslog writes to the old one until it is told to reopen.
		w.shift()
		must(os.Rename(w.path, w.path+".1"))
		nf, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		must(err)
		nf.Close()
		w.switchAt = time.Now().Add(300 * time.Millisecond)
		w.window(time.Now(), w.switchAt)
		w.fc.renames++
	case "copytruncate":
		w.shift()
		src, err := os.Open(w.path)
		must(err)
		dst, err := os.Create(w.path + ".1")
		must(err)
		_, err = io.Copy(dst, src)
		must(err)
		src.Close()
		must(dst.Close())
		must(w.f.Truncate(0))
		w.fc.copies++
	case "delete-delayed":
		must(os.Remove(w.path))
		w.switchAt = time.Now().Add(500 * time.Millisecond)
		w.window(time.Now(), w.switchAt)
		w.fc.deletes++
	case "delete-immediate":
		must(os.Remove(w.path))
		w.f.Close()
		w.open()
		w.fc.deletes++
	case "compress":
		w.compress()
		w.fc.compressed++
	case "stop", "start":
		c := control{kind, make(chan struct{})}
		w.control <- c
		<-c.done
	}
}

// write appends lines[w.n:] at rate lines per second, in chunks of 1–50
// lines, each chunk written in two parts split at a random byte so that
// the follower sees partial lines, and runs the events when they are due.
func (w *logWriter) write(lines [][]byte, rate int, events []event) {
	w.open()
	t0 := time.Now()
	for w.n < len(lines) {
		now := time.Now()
		if !w.switchAt.IsZero() && now.After(w.switchAt) {
			w.f.Close()
			w.open()
			w.switchAt = time.Time{}
			w.note("writer reopens the log")
		}
		if len(events) > 0 && now.Sub(t0) >= events[0].at && w.switchAt.IsZero() {
			w.do(events[0].kind)
			events = events[1:]
			continue
		}
		k := min(1+w.rnd.Intn(50), len(lines)-w.n)
		chunk := bytes.Join(lines[w.n:w.n+k], nil)
		cut := w.rnd.Intn(len(chunk))
		_, err := w.f.Write(chunk[:cut])
		must(err)
		time.Sleep(time.Duration(w.rnd.Intn(3)) * time.Millisecond)
		_, err = w.f.Write(chunk[cut:])
		must(err)
		w.n += k
		w.bytes += int64(len(chunk))
		if d := time.Duration(float64(w.n)/float64(rate)*float64(time.Second)) - time.Since(t0); d > 0 {
			time.Sleep(d)
		}
	}
	if !w.switchAt.IsZero() {
		time.Sleep(time.Until(w.switchAt))
		w.f.Close()
		w.open()
	}
	w.f.Close()
}

func runFollower(cfg config) *followerResult {
	dir := filepath.Join(cfg.dir, "follower")
	cfg.mkdirFor(dir)
	n := int(200_000 * cfg.scale)
	src := filepath.Join(dir, "source.log")
	f, err := os.Create(src)
	must(err)
	r, err := harness.RunTo("", nil, 5*time.Minute, f, cfg.tool, "gen-log", "--lines", strconv.Itoa(n), "--days", "2", "--seed", "7")
	must(err)
	must(f.Close())
	b, err := os.ReadFile(src)
	must(err)
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	res := &followerResult{gen: fmt.Sprintf("`mailtls-bench gen-log --lines %d --days 2 --seed 7` (%s)", n, strings.TrimSpace(string(r.Stderr)))}

	rotations := func(every, until time.Duration) []event {
		var evs []event
		for i, at := 0, every; at < until; i, at = i+1, at+every {
			kind := "rename"
			if i%2 == 1 {
				kind = "copytruncate"
			}
			evs = append(evs, event{at, kind})
		}
		return evs
	}
	want := func(c string) bool { return strings.Contains(cfg.fcases, c) }
	// F1: SIGKILL at random moments, no rotation.
	if want("F1") {
		m := min(len(lines), int(100_000*cfg.scale))
		fc := &followCase{name: "F1. SIGKILL", what: "SIGKILL of `mailtls follow` at random every 0.3–2 s (restarted at once) while the writer appends; no rotation"}
		followCaseRun(cfg, filepath.Join(dir, "f1"), fc, lines[:m], max(m/20, 1), nil, true, false)
		res.cases = append(res.cases, fc)
	}
	// F2: rotation by rename and copytruncate, no kills.
	if want("F2") {
		m := min(len(lines), int(100_000*cfg.scale))
		fc := &followCase{name: "F2. rotation", what: "the writer rotates every 2.5 s, alternately by rename (and keeps writing the renamed file 0.3 s, as syslog does until it is told to reopen) and by copytruncate; no kills"}
		followCaseRun(cfg, filepath.Join(dir, "f2"), fc, lines[:m], max(m/20, 1), rotations(2500*time.Millisecond, 19*time.Second), false, false)
		res.cases = append(res.cases, fc)
	}
	// F3: both.
	if want("F3") {
		m := min(len(lines), int(150_000*cfg.scale))
		fc := &followCase{name: "F3. SIGKILL + rotation", what: "F1 and F2 together: SIGKILL every 0.3–2 s and 100 ms after every rotation, while the writer rotates every 2.5 s by rename and copytruncate"}
		followCaseRun(cfg, filepath.Join(dir, "f3"), fc, lines[:m], max(m/30, 1), rotations(2500*time.Millisecond, 29*time.Second), true, false)
		res.cases = append(res.cases, fc)
	}
	// F4: disk full during writes.
	if want("F4") {
		fc := &followCase{name: "F4. disk full", what: "database on a 64 MiB tmpfs filled with a ballast file up to the last 1 MiB while the writer appends; after the writer stops the ballast is deleted and the follower SIGKILLed and restarted"}
		if !cfg.tmpfs {
			fc.notes = append(fc.notes, "skipped: needs root to mount a tmpfs")
			fc.gaveUp = true
		} else {
			m := min(len(lines), int(60_000*cfg.scale))
			followCaseRun(cfg, filepath.Join(dir, "f4"), fc, lines[:m], max(m/6, 1), nil, false, true)
		}
		res.cases = append(res.cases, fc)
	}
	// F5: log deleted while followed, and recreated.
	if want("F5") {
		m := min(len(lines), int(60_000*cfg.scale))
		evs := []event{{3 * time.Second, "delete-delayed"}, {7 * time.Second, "delete-immediate"}, {10 * time.Second, "delete-delayed"}}
		fc := &followCase{name: "F5. log deleted and recreated", what: "the log is deleted 3 times while followed: twice the writer keeps writing to the deleted file for 0.5 s before creating a new one, once it creates the new one at once"}
		followCaseRun(cfg, filepath.Join(dir, "f5"), fc, lines[:m], max(m/12, 1), evs, false, false)
		res.cases = append(res.cases, fc)
	}
	// F6: several rotations while the follower is down.
	if want("F6") {
		m := min(len(lines), int(60_000*cfg.scale))
		evs := []event{{2 * time.Second, "stop"}, {3 * time.Second, "rename"}, {5 * time.Second, "rename"}, {5500 * time.Millisecond, "compress"},
			{7 * time.Second, "copytruncate"}, {8 * time.Second, "rename"}, {8500 * time.Millisecond, "compress"}, {10 * time.Second, "start"}}
		fc := &followCase{name: "F6. rotations while stopped", what: "`mailtls follow` is SIGKILLed, then the log is rotated 4 times (rename, rename, copytruncate, rename; the file two back gzip-compressed after two of them, the checkpointed one included) before it is restarted"}
		followCaseRun(cfg, filepath.Join(dir, "f6"), fc, lines[:m], max(m/12, 1), evs, false, false)
		res.cases = append(res.cases, fc)
	}
	return res
}

// followCaseRun runs one follower case in dir and fills fc.
func followCaseRun(cfg config, dir string, fc *followCase, lines [][]byte, rate int, evs []event, kill, full bool) {
	logf("follower: %s (%d lines)", fc.name, len(lines))
	cfg.mkdirFor(dir)
	dbDir := filepath.Join(dir, "db")
	if full {
		must(os.MkdirAll(dbDir, 0o755))
		if err := syscall.Mount("tmpfs", dbDir, "tmpfs", 0, "size=64m,mode=0755"); err != nil {
			fc.notes = append(fc.notes, "skipped: mount tmpfs: "+err.Error())
			fc.gaveUp = true
			return
		}
		mounts = append(mounts, dbDir)
		defer func() {
			_ = syscall.Unmount(dbDir, syscall.MNT_DETACH)
		}()
	}
	cfg.mkdirFor(dbDir)
	db := filepath.Join(dbDir, "mailtls.db")
	logPath := filepath.Join(dir, "mail.log")
	fc.lines = len(lines)
	argv := cfg.as(cfg.bin, "follow", "--db", db, "--log", logPath, "--log-level", "info")
	fc.cmd = "mailtls follow --db DB --log mail.log --log-level info"
	start := func() *harness.Proc {
		p, err := harness.Start(cfg.logs, "follow-"+filepath.Base(dir), argv...)
		must(err)
		return p
	}
	p := start()
	// Wait for the database so that the ballast leaves the follower's
	// schema in place.
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(db); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	ballast := filepath.Join(dbDir, "ballast")
	if full {
		fillBallast(ballast, 1<<20)
	}
	w := &logWriter{path: logPath, rnd: rand.New(rand.NewSource(int64(len(lines)))), fc: fc, keep: 5}
	evlog, err := os.Create(filepath.Join(dir, "events.txt"))
	must(err)
	defer evlog.Close()
	w.evlog = evlog
	if kill {
		w.rotated = make(chan string, 4)
	}
	for _, e := range evs {
		if e.kind == "stop" {
			w.control = make(chan control)
		}
	}
	done := make(chan struct{})
	go func() {
		w.write(lines, rate, evs)
		close(done)
	}()
	krnd := rand.New(rand.NewSource(42))
	var killTimes []time.Time
	targeted := 0
	if kill {
	loop:
		for {
			// Random kills, plus one 100 ms after every rotation, when
			// the writer may still be writing the renamed file.
			select {
			case <-done:
				break loop
			case <-time.After(time.Duration(300+krnd.Intn(1700)) * time.Millisecond):
			case <-w.rotated:
				time.Sleep(100 * time.Millisecond)
				targeted++
			}
			if p.Exited() {
				fc.exitedOnItsOwn++
			} else {
				_ = p.Signal(syscall.SIGKILL)
				<-p.Done()
				fc.kills++
				killTimes = append(killTimes, time.Now())
				fmt.Fprintf(evlog, "%s SIGKILL\n", time.Now().Format("15:04:05.000"))
			}
			p = start()
		}
	} else if w.control != nil {
	ctl:
		for {
			select {
			case <-done:
				break ctl
			case c := <-w.control:
				switch c.kind {
				case "stop":
					_ = p.Signal(syscall.SIGKILL)
					<-p.Done()
					fc.kills++
				case "start":
					p = start()
				}
				fmt.Fprintf(evlog, "%s follower %s\n", time.Now().Format("15:04:05.000"), c.kind)
				close(c.done)
			}
		}
	} else {
		<-done
	}
	if n := len(killTimes); n > 0 && fc.renames+fc.copies > 0 {
		in := 0
		for _, t := range killTimes {
			if w.inWindow(t) {
				in++
			}
		}
		fc.notes = append(fc.notes, fmt.Sprintf("%d SIGKILLs 100 ms after a rotation; %d of all %d SIGKILLs fell while the writer was still writing a renamed file", targeted, in, n))
	}
	if full {
		time.Sleep(3 * time.Second)
		fc.commitErrs = countInLog(p.LogPath, "follower stopped")
		if p.Exited() {
			fc.exitedOnItsOwn++
			fc.notes = append(fc.notes, "the follower exited by itself while the disk was full: "+harness.Tail(lastLines(p.LogPath, 3), 300))
		}
		_ = os.Remove(ballast)
		fc.notes = append(fc.notes, fmt.Sprintf("%d failed commits logged while full (\"follower stopped; restarting from the last checkpoint\")", fc.commitErrs))
		if !p.Exited() {
			_ = p.Signal(syscall.SIGKILL)
			<-p.Done()
			fc.kills++
		}
		p = start()
	}

	// The truth: the same lines in one file, imported into a fresh database.
	clean := filepath.Join(dir, "clean.log")
	must(os.WriteFile(clean, bytes.Join(lines[:w.n], nil), 0o644))
	cleanDB := filepath.Join(dir, "clean.db")
	if _, err := cfg.cli(5*time.Minute, "--db", cleanDB, "import", "-q", clean); err != nil {
		fatalf("follower: clean import: %v", err)
	}
	want := deliveries(cfg, cleanDB)
	fc.expected = total(want)

	// Wait for the follower to catch up (or to stop making progress).
	t0 := time.Now()
	last, lastChange := -1, time.Now()
	var got map[string]int
	for {
		if p.Exited() {
			fc.exitedOnItsOwn++
			fc.notes = append(fc.notes, "the follower exited by itself: "+harness.Tail(lastLines(p.LogPath, 3), 300))
			p = start()
		}
		got = deliveries(cfg, db)
		n := total(got)
		if n != last {
			last, lastChange = n, time.Now()
		}
		if n >= fc.expected {
			fc.caughtUp = fmt.Sprintf("caught up %.1f s after the writer stopped", time.Since(t0).Seconds())
			break
		}
		if time.Since(lastChange) > 15*time.Second || time.Since(t0) > 90*time.Second {
			fc.caughtUp = fmt.Sprintf("stopped making progress at %d rows (waited %.0f s)", n, time.Since(t0).Seconds())
			break
		}
		time.Sleep(time.Second)
	}
	if err := p.Stop(15 * time.Second); err != nil {
		fc.notes = append(fc.notes, "SIGTERM: "+err.Error())
	}
	got = deliveries(cfg, db)
	fc.recorded = total(got)
	compare(fc, want, got)
	if fc.lost+fc.dup+fc.differ > 0 {
		// Keep the evidence: the follower's database and the log files.
		ev := filepath.Join(dir, "evidence")
		_ = os.MkdirAll(ev, 0o755)
		for _, sfx := range []string{"", "-wal", "-shm"} {
			_ = copyFile(db+sfx, filepath.Join(ev, "mailtls.db"+sfx))
		}
		fc.notes = append(fc.notes, "database and logs kept in "+dir)
	}
	logf("follower: %s: expected %d, recorded %d, lost %d, duplicated %d, fields differ %d", fc.name, fc.expected, fc.recorded, fc.lost, fc.dup, fc.differ)
}

// fillBallast writes a file until the filesystem has only leave bytes free.
func fillBallast(path string, leave int64) {
	var st syscall.Statfs_t
	must(syscall.Statfs(filepath.Dir(path), &st))
	free := int64(st.Bavail) * st.Bsize
	size := free - leave
	if size <= 0 {
		return
	}
	f, err := os.Create(path)
	must(err)
	buf := make([]byte, 1<<20)
	for size > 0 {
		n := min(int64(len(buf)), size)
		if _, err := f.Write(buf[:n]); err != nil {
			break
		}
		size -= n
	}
	f.Close()
}

// deliveries returns `mailtls deliveries --format jsonl [args]` as a multiset.
func deliveries(cfg config, db string, args ...string) map[string]int {
	r, err := harness.Run(5*time.Minute, false, cfg.as(append([]string{cfg.bin, "--db", db, "deliveries", "--format", "jsonl"}, args...)...)...)
	if err != nil {
		return map[string]int{}
	}
	m := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(r.Stdout))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := sc.Text(); l != "" {
			m[l]++
		}
	}
	return m
}

func total(m map[string]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

func countInLog(path, s string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}

func lastLines(path string, n int) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	ls := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return []byte(strings.Join(ls, "\n"))
}

// identity is what names a delivery regardless of what the follower made of
// it: time, queue ID, recipient and status.
func identity(row string) string {
	var m struct {
		Time      string `json:"time"`
		QueueID   string `json:"queue_id"`
		Recipient string `json:"recipient"`
		Status    string `json:"status"`
	}
	if err := json.Unmarshal([]byte(row), &m); err != nil {
		return row
	}
	return m.Time + "|" + m.QueueID + "|" + m.Recipient + "|" + m.Status
}

// compare sorts the differences between the clean import (want) and the
// follower's rows (got): rows missing altogether (lost), rows in excess
// (duplicated), and deliveries present in both whose fields differ (for
// example TLS unknown instead of trusted).
func compare(fc *followCase, want, got map[string]int) {
	type pair struct{ want, got map[string]int }
	byID := map[string]*pair{}
	get := func(id string) *pair {
		p := byID[id]
		if p == nil {
			p = &pair{map[string]int{}, map[string]int{}}
			byID[id] = p
		}
		return p
	}
	for row, n := range want {
		get(identity(row)).want[row] += n
	}
	for row, n := range got {
		get(identity(row)).got[row] += n
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		p := byID[id]
		nw, ng, same := total(p.want), total(p.got), 0
		for row, n := range p.want {
			same += min(n, p.got[row])
		}
		switch {
		case ng < nw:
			fc.lost += nw - ng
		case ng > nw:
			fc.dup += ng - nw
		}
		diff := min(nw, ng) - same
		fc.differ += diff
		if (ng != nw || diff > 0) && len(fc.samples) < 6 {
			for row := range p.want {
				if p.got[row] < p.want[row] {
					fc.samples = append(fc.samples, fmt.Sprintf("clean import ×%d: %s", p.want[row], row))
				}
			}
			for row := range p.got {
				if p.got[row] > p.want[row] {
					fc.samples = append(fc.samples, fmt.Sprintf("follower ×%d: %s", p.got[row], row))
				}
			}
		}
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
