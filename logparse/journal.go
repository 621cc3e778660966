package logparse

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/internal/clip"
)

// ErrJournalctl wraps a failure to start journalctl.
var ErrJournalctl = errors.New("logparse: cannot run journalctl")

// JournalFollower follows the systemd journal by running
//
//	journalctl --follow --no-tail --output=json --no-pager [--after-cursor=CURSOR] [--unit=UNIT]... [Args...]
//
// and reading one JSON entry per line from its standard output (no cgo, no
// libsystemd). Without a cursor it starts at the oldest entry, as a file
// follower starts at the start of its file; pass "--since=..." in Args to
// start later.
//
// Each entry whose SYSLOG_IDENTIFIER starts with one of Identifiers, and
// that Trust believes (see JournalTrust: an entry that claims to be an smtp
// or lmtp client must come from a process running as Postfix's user), is fed
// to the Correlator as is (its header parser reads journald JSON). Entries
// not believed are counted by reason (Skipped) and logged: the first of each
// reason with its fields, then the totals at most once a minute. Every entry,
// fed or not, advances the position: the checkpoint's Cursor is the
// __CURSOR of the last entry read, and State is the correlator state after
// it. Batches are committed as by Follower: at MaxBatch deliveries, every
// BatchEvery while entries are pending, when journalctl exits, and when ctx
// is cancelled.
//
// A line without a newline when journalctl exits is an entry cut off by its
// death, not a complete one: it is dropped, and read again from the
// restarted journalctl. When journalctl exits for any reason, the follower
// commits and restarts it from the last cursor after Backoff, doubling the
// wait up to MaxBackoff while it keeps exiting without output. A line longer
// than MaxLine is dropped (journalctl prints fields longer than 4096 bytes
// as null unless given --all, so entries are much shorter).
type JournalFollower struct {
	// Journalctl is the program to run ("journalctl", looked up in PATH).
	Journalctl string
	// Trust decides which entries that claim to be Postfix's smtp or lmtp
	// are believed. Its Units are passed as --unit filters; none by
	// default: Postfix logs under postfix.service, postfix@-.service or
	// from a login session, depending on the distribution and on how it
	// was started.
	Trust JournalTrust
	// Directory, if set, is passed as --directory: read the journal files
	// in DIR (a bind-mounted /var/log/journal, say) instead of the
	// system journal.
	Directory string
	// Identifiers are the SYSLOG_IDENTIFIER prefixes of the entries fed
	// to the correlator; nil means {"postfix"}, which also matches
	// multi-instance names such as "postfix-out/smtp". An empty string
	// matches every entry.
	Identifiers []string
	// Args are appended to the journalctl command line, for example
	// "--directory=DIR", "--merge" or "--since=today".
	Args []string
	// Env holds extra KEY=VALUE environment variables for journalctl.
	Env []string
	// BatchEvery, MaxBatch and MaxLine are as in Follower.
	BatchEvery time.Duration
	MaxBatch   int
	MaxLine    int
	// Backoff is the first wait before restarting journalctl (1 s);
	// MaxBackoff caps it (30 s).
	Backoff, MaxBackoff time.Duration
	// Logger receives restarts and journalctl's complaints; nil discards.
	Logger *slog.Logger
	// NewCorrelator is as in Follower.
	NewCorrelator func() *Correlator

	mu      sync.Mutex
	skipped JournalSkips // of the current or last Run
}

// Skipped returns the entries the current (or last) Run skipped because
// Trust did not believe them, by reason.
func (j *JournalFollower) Skipped() JournalSkips {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.skipped
}

func (j *JournalFollower) setSkipped(s JournalSkips) {
	j.mu.Lock()
	j.skipped = s
	j.mu.Unlock()
}

// Run follows the journal from the Checkpoint from (its Cursor and State; the
// zero Checkpoint means the oldest entry) until ctx is cancelled, then
// commits what it has read and returns nil. It returns early for a Commit
// error (wrapped in ErrCommit), when journalctl cannot be started
// (ErrJournalctl), or for a bad checkpoint (ErrBadCheckpoint).
func (j *JournalFollower) Run(ctx context.Context, from Checkpoint, commit Commit) error {
	if commit == nil {
		return errors.New("logparse: JournalFollower.Run needs a Commit")
	}
	r := newJournalRun(j, commit)
	j.setSkipped(JournalSkips{})
	defer r.logSkips(true)
	if from.Cursor == "" && from.Path != "" {
		r.log.Warn("checkpoint is for a log file, not the journal; starting at the oldest entry", "checkpoint_path", from.Path)
		from = Checkpoint{}
	}
	if len(from.State) > 0 {
		if err := r.corr.UnmarshalState(from.State); err != nil {
			return fmt.Errorf("%w: correlator state: %v", ErrBadCheckpoint, err)
		}
	}
	r.cursor = from.Cursor
	first := orDuration(j.Backoff, time.Second)
	maxWait := max(orDuration(j.MaxBackoff, 30*time.Second), first)
	wait := first
	for {
		n, err := r.runChild(ctx)
		if ctx.Err() != nil {
			if errors.Is(err, ErrCommit) {
				return err
			}
			return nil
		}
		if err != nil && (errors.Is(err, ErrCommit) || errors.Is(err, ErrJournalctl)) {
			return err
		}
		if n > 0 {
			wait = first
		}
		r.log.Warn("journalctl exited; restarting it from the last cursor",
			"err", err, "entries", n, "cursor", r.cursor, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		if n == 0 {
			wait = min(2*wait, maxWait)
		}
	}
}

type journalRun struct {
	settings
	j        *JournalFollower
	commitFn Commit
	idents   []string

	cursor  string // of the last entry read
	pending []delivery.Delivery
	dirty   bool

	skips       JournalSkips // since Run started
	loggedSkips JournalSkips // the totals last logged
	skipsLogged time.Time
}

func newJournalRun(j *JournalFollower, commit Commit) *journalRun {
	st := newSettings(j.Logger, j.NewCorrelator, j.BatchEvery, j.MaxBatch, j.MaxLine)
	st.log = st.log.With("source", "journal")
	idents := j.Identifiers
	if idents == nil {
		idents = []string{"postfix"}
	}
	return &journalRun{settings: st, j: j, commitFn: commit, idents: idents}
}

// args returns journalctl's command line after the program name.
func (r *journalRun) args() []string {
	a := []string{"--follow", "--no-tail", "--output=json", "--no-pager"}
	if r.cursor != "" {
		a = append(a, "--after-cursor="+r.cursor)
	}
	for _, u := range r.j.Trust.Units {
		a = append(a, "--unit="+u)
	}
	if r.j.Directory != "" {
		a = append(a, "--directory="+r.j.Directory)
	}
	return append(a, r.j.Args...)
}

// runChild runs one journalctl until it exits or ctx is done, committing as
// it goes and at the end. It returns the number of entries read.
func (r *journalRun) runChild(ctx context.Context) (int, error) {
	prog := r.j.Journalctl
	if prog == "" {
		prog = "journalctl"
	}
	cmd := exec.Command(prog, r.args()...)
	if len(r.j.Env) > 0 {
		cmd.Env = append(os.Environ(), r.j.Env...)
	}
	stderr := &tailBuffer{max: 4096}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrJournalctl, err)
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrJournalctl, err)
	}
	r.log.Debug("journalctl started", "args", cmd.Args[1:])

	lines := make(chan []byte, 64)
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(lines)
		readLines(stdout, r.maxLine, lines, stop)
	}()
	// end stops journalctl and collects its exit status.
	end := func() error {
		cmd.Process.Kill()
		close(stop)
		<-readerDone
		err := cmd.Wait()
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			r.log.Warn("journalctl said", "stderr", msg)
		}
		return err
	}

	tick := time.NewTicker(r.batchEvery)
	defer tick.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			end()
			return n, r.commit(ctx)
		case <-tick.C:
			if r.dirty {
				if err := r.commit(ctx); err != nil {
					end()
					return n, err
				}
			}
		case line, ok := <-lines:
			if !ok {
				if err := r.commit(ctx); err != nil {
					end()
					return n, err
				}
				err := end()
				if err == nil {
					err = errors.New("journalctl ended its output")
				}
				return n, err
			}
			if r.entry(line) {
				n++
			}
			if len(r.pending) >= r.maxBatch {
				if err := r.commit(ctx); err != nil {
					end()
					return n, err
				}
			}
		}
	}
}

// readLines sends the complete lines of rd, at most maxLine bytes long
// without the newline, until EOF, an error, or stop.
func readLines(rd io.Reader, maxLine int, lines chan<- []byte, stop <-chan struct{}) {
	br := bufio.NewReaderSize(rd, 64<<10)
	var held []byte
	discarding := false
	for {
		chunk, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if !discarding && len(held)+len(chunk) <= maxLine {
				held = append(held, chunk...)
			} else {
				discarding, held = true, held[:0]
			}
			continue
		}
		if err != nil {
			return // EOF or a read error: a held line is incomplete
		}
		if discarding || len(held)+len(chunk)-1 > maxLine {
			discarding, held = false, held[:0]
			continue
		}
		line := make([]byte, 0, len(held)+len(chunk)-1)
		line = append(append(line, held...), chunk[:len(chunk)-1]...)
		held = held[:0]
		select {
		case lines <- line:
		case <-stop:
			return
		}
	}
}

// entry consumes one journalctl output line and reports whether it was an
// entry (had a cursor).
func (r *journalRun) entry(line []byte) bool {
	cursor, ok := journalField(line, "__CURSOR")
	if !ok || cursor == "" {
		r.log.Debug("journalctl line without __CURSOR ignored", "line", clip.Text(string(line), 200))
		return false
	}
	if v := r.j.Trust.Check(line); v != JournalBelieved {
		r.skip(v, line, cursor)
	} else if id, _ := journalField(line, "SYSLOG_IDENTIFIER"); r.wanted(id) {
		r.pending = append(r.pending, r.corr.Feed(line)...)
	}
	r.cursor = cursor
	r.dirty = true
	return true
}

// skip counts an entry that Trust did not believe. The first of each reason
// is logged with the fields that decided; totals are logged by commit.
func (r *journalRun) skip(v JournalVerdict, line []byte, cursor string) {
	before := r.skips
	r.skips.Add(v)
	r.j.setSkipped(r.skips)
	if before.Count(v) == 0 {
		f := func(name string) string {
			s, ok := journalField(line, name)
			if !ok {
				return "(missing)"
			}
			return s
		}
		r.log.Warn("journal entry skipped: it claims to be Postfix, but journald's own fields say it is not from Postfix",
			"reason", v.String(), "SYSLOG_IDENTIFIER", f("SYSLOG_IDENTIFIER"), "_UID", f("_UID"), "_COMM", f("_COMM"),
			"_PID", f("_PID"), "_SYSTEMD_UNIT", f("_SYSTEMD_UNIT"), "cursor", cursor,
			"trusted_uids", append([]uint32{0}, r.j.Trust.UIDs...), "trusted_units", r.j.Trust.Units)
	}
}

// logSkips logs the skip totals when they changed, at most once a minute
// (a local user can write such entries in a loop).
func (r *journalRun) logSkips(force bool) {
	if r.skips == r.loggedSkips || !force && time.Since(r.skipsLogged) < time.Minute {
		return
	}
	r.log.Warn("journal entries skipped as not from Postfix", "total", r.skips.Total(), "by_reason", r.skips.String())
	r.loggedSkips, r.skipsLogged = r.skips, time.Now()
}

func (r *journalRun) wanted(ident string) bool {
	for _, p := range r.idents {
		if strings.HasPrefix(ident, p) {
			return true
		}
	}
	return false
}

func (r *journalRun) commit(ctx context.Context) error {
	if !r.dirty {
		return nil
	}
	state, err := r.corr.MarshalState()
	if err != nil {
		return fmt.Errorf("logparse: correlator state: %w", err)
	}
	b := Batch{
		Deliveries: r.pending,
		Checkpoint: Checkpoint{Cursor: r.cursor, State: state},
		Stats:      r.corr.Stats(),
	}
	if err := r.commitFn(context.WithoutCancel(ctx), b); err != nil {
		return fmt.Errorf("%w: %w", ErrCommit, err)
	}
	r.pending = nil
	r.dirty = false
	r.logSkips(false)
	return nil
}

// journalField returns the string value of a field of a journald JSON
// entry (a flat object) without decoding the whole object. It reports false
// if the field is missing or not a string (journald writes non-UTF-8 values
// as arrays of numbers). The name matches only as a key: after "{" or ","
// and before ":". Inside a string every quote is escaped, so the name
// cannot match there.
func journalField(line []byte, name string) (string, bool) {
	key := make([]byte, 0, len(name)+2)
	key = append(append(append(key, '"'), name...), '"')
	for i := 0; ; {
		k := bytes.Index(line[i:], key)
		if k < 0 {
			return "", false
		}
		start := i + k
		i = start + len(key)
		p := start - 1
		for p >= 0 && isSpace(line[p]) {
			p--
		}
		if p < 0 || line[p] != '{' && line[p] != ',' {
			continue // inside a string, or a value
		}
		j := skipSpace(line, i)
		if j >= len(line) || line[j] != ':' {
			continue // a value, not a key
		}
		j = skipSpace(line, j+1)
		if j >= len(line) || line[j] != '"' {
			return "", false
		}
		for e := j + 1; e < len(line); e++ {
			switch line[e] {
			case '"':
				return string(line[j+1 : e]), true
			case '\\':
				var s string
				end := jsonStringEnd(line, j)
				if end < 0 || json.Unmarshal(line[j:end], &s) != nil {
					return "", false
				}
				return s, true
			}
		}
		return "", false
	}
}

// jsonStringEnd returns the index just past the JSON string that starts at
// b[i] == '"', or -1.
func jsonStringEnd(b []byte, i int) int {
	for e := i + 1; e < len(b); e++ {
		switch b[e] {
		case '\\':
			e++
		case '"':
			return e + 1
		}
	}
	return -1
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
