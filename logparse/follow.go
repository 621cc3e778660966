package logparse

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// Defaults of the Follower fields.
const (
	DefaultPoll       = 250 * time.Millisecond
	DefaultBatchEvery = 500 * time.Millisecond
	DefaultMaxBatch   = 5000
	DefaultMaxLine    = MaxLineLen
)

const (
	// readChunk is how much a follower reads from a file at a time.
	readChunk = 64 << 10
	// rotationGracePolls is how many polls a follower keeps reading a
	// renamed file that is still growing before it switches to the new
	// file at Path (see Follower).
	rotationGracePolls = 8
)

// ErrNoPath is returned by Follower.Run when Path is empty.
var ErrNoPath = errors.New("logparse: follower has no path")

// ErrCommit wraps the error of a Commit, so callers can tell a storage
// failure (retry from the last checkpoint) from a failure to read.
var ErrCommit = errors.New("logparse: commit failed")

// Follower follows a log file that other processes append to and rotate,
// feeds each complete line to a Correlator, and hands the deliveries, with
// a checkpoint of exactly how far it got, to a Commit.
//
// Lines. A line is the bytes up to and including "\n". The last line of a
// file is held back until its newline arrives: it is never fed early and
// never lost. Lines are split as LineReader splits them for import (one
// line reader, lineSplitter): a CR before the newline is dropped, and a
// line longer than MaxLine is read and discarded without being kept in
// memory, and counted once in Stats.Lines and Stats.Skipped
// (Correlator.SkipLine); the line after it is read normally, never merged
// with it. The first line the correlator skips is logged once, quoted.
// Memory is bounded by MaxLine, a read buffer and MaxBatch deliveries.
//
// Batches. Commit receives the deliveries of a run of consecutive lines and
// a Checkpoint taken just past the last of them: the file's identity, the
// byte offset after that line's newline, and the correlator state after
// feeding it. A restart from that checkpoint therefore continues as if the
// follower had never stopped. Commit is called when MaxBatch deliveries are
// pending, when lines have been pending for BatchEvery, when the follower
// has read to the end of the file (after SettleFor), before it switches to
// another file, and when ctx is cancelled. If Commit fails, Run returns its error (wrapped in
// ErrCommit) and nothing after the previous checkpoint counts as read.
//
// Polling. The follower reads to the end of the file, commits, and sleeps
// until Waker wakes it (every Poll by default) or Reopen is called. Each poll
// then reads new lines and compares the open file with what Path names now:
//
//   - Rotation by rename (or delete and recreate): Path names a file with
//     another device or inode. The follower keeps reading the old file while
//     it still grows, for up to 8 polls, because a syslog daemon writes to it
//     until it is told to reopen. Then it reads the old file to its end,
//     feeding a last line that has no newline (a rotated file is final),
//     commits, and follows the new file from offset 0. Unless the old file
//     is a copytruncate copy of the file at Path made before the truncation
//     (a restart during copytruncate finds it so, see Restart): when the
//     file at Path has the old file's first line and is at least as long as
//     what was consumed of it, it goes on from that offset, so the copied
//     lines are not read twice, and its truncation is handled as below.
//     The file at Path is noted (identity, first line, size) when the
//     rotation is first seen; if copytruncate truncated it before the
//     switch, its lines are read from its copy (found by that first line)
//     first, or a warning says they are lost.
//   - Path missing: the file was renamed or deleted and no new one exists
//     yet. The follower logs this once, keeps the old file open and keeps
//     reading it, and switches as above when a new file appears. A log that
//     does not exist yet is waited for in the same way.
//   - Truncation (copytruncate): the open file is smaller than the read
//     position, or its first line is not the one it had (see
//     Checkpoint.FirstLineHash; a truncated file that grew back past the old
//     offset is recognised by this). Lines written between the follower's
//     last read and the copy are in the copy, so the follower looks among
//     the siblings of Path ("mail.log.1", "mail.log-20250101", any
//     "mail.log.*" or "mail.log-*" that is not compressed) for a file with
//     the old first line that is at least as long as the offset, reads it
//     from the offset to its end, commits, and then reads the truncated file
//     from offset 0. Without such a copy it logs a warning with the number of
//     bytes known to be unread, and reads from 0. As the file may be
//     truncated and rewritten while it is being read, the first line is
//     checked again after every read: bytes read from replaced content are
//     dropped, never fed.
//
// Restart. Run resumes from a Checkpoint. If the file at Path has the
// checkpoint's device, inode and first line and is at least Offset long,
// reading resumes at Offset. Otherwise the checkpointed file was rotated or
// truncated while the follower was stopped, and is looked for among the
// siblings. A file with the checkpoint's device and inode (and first line,
// so that a reused inode number is not mistaken for it) was renamed: it is
// read from Offset as if the rotation had just been seen, so lines that a
// syslog daemon still writes to it are not lost, and the file at Path
// follows. Else a file with the checkpoint's first line is a copytruncate
// copy: it is read from Offset to its end, and then the file at Path from
// 0. Else a gzip-compressed sibling whose content starts with the
// checkpoint's first line is the checkpointed file, compressed by a later
// rotation: it is decompressed and read from Offset. If none is found, a
// warning says that the unread lines are lost unless imported, with the
// command that imports every rotated sibling.
// A checkpoint of another Path is ignored, with a warning: the file is read
// from its start with a new correlator.
//
// Several rotations while stopped. The siblings modified after the
// checkpointed file (by modification time, oldest first; rotated names give
// no reliable order) were rotated after it: on a restart they are read
// whole, decompressing gzip, after the checkpointed file and before the
// file at Path. While one is read, checkpoints describe it (a compressed
// one by its first line and the offset in its decompressed content), so a
// restart during this catch-up resumes inside it. Files in other
// compression formats are skipped with a warning giving the command that
// imports them. While running, one rotation at a time is recovered: if
// Path is rotated twice between two polls, the file in between is not
// read (a poll that reads a long renamed file counts as one: the file at
// Path is only noted after it).
//
// Reopen makes the next poll close the file and resolve Path again as on a
// restart (for SIGHUP).
//
// A Follower must not run more than once at a time.
type Follower struct {
	// Path is the log file to follow. It need not exist yet.
	Path string
	// Poll is the interval between polls when Waker is nil (DefaultPoll).
	Poll time.Duration
	// BatchEvery bounds how long read lines wait for a commit while lines
	// keep arriving (DefaultBatchEvery).
	BatchEvery time.Duration
	// SettleFor delays the commit at the end of the file: it happens at
	// the first end of file reached once the oldest uncommitted line has
	// waited SettleFor (zero: at every end of file). A busy log, which
	// reaches its end at every poll, then makes one commit per SettleFor
	// instead of one per poll; each commit rewrites the database pages it
	// touches, whatever the number of lines.
	SettleFor time.Duration
	// MaxBatch is the number of pending deliveries that triggers a
	// commit (DefaultMaxBatch).
	MaxBatch int
	// MaxLine is the longest line fed to the correlator, without its
	// newline (DefaultMaxLine; at least 4096).
	MaxLine int
	// Logger receives rotation, truncation and recovery events; nil
	// discards them.
	Logger *slog.Logger
	// NewCorrelator makes the correlator of a Run; nil means
	// NewCorrelator(Options{}).
	NewCorrelator func() *Correlator
	// Waker wakes the idle follower; nil means TimedWaker{Poll}.
	Waker Waker

	reopen atomic.Bool
	mu     sync.Mutex
	kick   chan struct{}
}

// Reopen makes the follower close its file and look at Path afresh at its
// next poll, which it starts at once. It is safe to call at any time, from
// any goroutine.
func (f *Follower) Reopen() {
	f.reopen.Store(true)
	select {
	case f.kickChan() <- struct{}{}:
	default:
	}
}

func (f *Follower) kickChan() chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.kick == nil {
		f.kick = make(chan struct{}, 1)
	}
	return f.kick
}

// Run follows Path, starting from the Checkpoint from (the zero Checkpoint
// means the start of the file), until ctx is cancelled. It then commits what
// it has read and returns nil. It returns early only for a Commit error, a
// read error, or a checkpoint whose correlator state cannot be restored
// (ErrBadCheckpoint).
func (f *Follower) Run(ctx context.Context, from Checkpoint, commit Commit) error {
	if f.Path == "" {
		return ErrNoPath
	}
	if commit == nil {
		return errors.New("logparse: Follower.Run needs a Commit")
	}
	r := newFileRun(f, commit)
	defer r.close()
	if err := r.restore(from); err != nil {
		return err
	}
	waker := f.Waker
	if waker == nil {
		waker = TimedWaker{Interval: orDuration(f.Poll, DefaultPoll)}
	}
	kick := f.kickChan()
	for {
		if err := r.poll(ctx); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return r.commit(ctx)
		}
		select {
		case <-ctx.Done():
			return r.commit(ctx)
		case <-waker.Wake():
		case <-kick:
		}
	}
}

// fileState is a file being read, or (file == nil) one only remembered from
// a checkpoint or a closed file.
type fileState struct {
	file     *os.File
	name     string
	dev, ino uint64
	fp       string // see Checkpoint.FirstLineHash
	offset   int64  // just past the last consumed line
	pos      int64  // next byte to read: offset plus the held partial line
	size     int64  // size at the last check
}

// settings are what the file and journal followers share: their options
// with the defaults applied.
type settings struct {
	log        *slog.Logger
	corr       *Correlator
	batchEvery time.Duration
	maxBatch   int
	maxLine    int
}

func newSettings(log *slog.Logger, mk func() *Correlator, batchEvery time.Duration, maxBatch, maxLine int) settings {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if mk == nil {
		mk = func() *Correlator { return NewCorrelator(Options{}) }
	}
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatch
	}
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	return settings{log: log, corr: mk(), batchEvery: orDuration(batchEvery, DefaultBatchEvery), maxBatch: maxBatch, maxLine: maxLine}
}

type fileRun struct {
	settings
	f        *Follower
	commitFn Commit

	cur *fileState // the open file that Path named; nil while none
	src *fileState // the file the next checkpoint describes
	// unresolved: src is a remembered position (restart, Reopen) that
	// the next successful open of Path must match or recover.
	unresolved bool

	buf   []byte
	lines lineSplitter // holds the start of an incomplete line

	skipLogged bool // the first skipped line has been logged

	pending    []delivery.Delivery
	dirty      bool // lines consumed since the last commit
	dirtySince time.Time

	rotWait int // polls spent waiting for a renamed file to go quiet
	// next is the file at Path as first seen while the renamed file cur is
	// still read (identity, first line, size), so that a copytruncate of
	// it before the switch is noticed; nil when not known.
	next        *fileState
	missing     bool   // "Path is gone" has been logged
	lastOpenErr string // the last open error logged
}

func newFileRun(f *Follower, commit Commit) *fileRun {
	st := newSettings(f.Logger, f.NewCorrelator, f.BatchEvery, f.MaxBatch, f.MaxLine)
	st.log = st.log.With("path", f.Path)
	st.maxLine = max(st.maxLine, fingerprintMax)
	return &fileRun{settings: st, f: f, commitFn: commit, buf: make([]byte, readChunk), lines: newLineSplitter(st.maxLine)}
}

func orDuration(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (r *fileRun) close() {
	if r.cur != nil && r.cur.file != nil {
		r.cur.file.Close()
	}
}

func (r *fileRun) restore(cp Checkpoint) error {
	if cp.IsZero() {
		return nil
	}
	if cp.Path != r.f.Path {
		r.log.Warn("checkpoint is for another log; following this one from its start", "checkpoint_path", cp.Path)
		return nil
	}
	if len(cp.State) > 0 {
		if err := r.corr.UnmarshalState(cp.State); err != nil {
			return fmt.Errorf("%w: correlator state: %v", ErrBadCheckpoint, err)
		}
	}
	r.src = &fileState{name: r.f.Path, dev: cp.Dev, ino: cp.Ino, fp: cp.FirstLineHash, offset: cp.Offset, pos: cp.Offset}
	r.unresolved = true
	return nil
}

// poll does one round: read, check Path, commit.
func (r *fileRun) poll(ctx context.Context) error {
	if r.f.reopen.Swap(false) && r.cur != nil {
		_, err := r.read(ctx, r.cur, false)
		if err == errReplaced {
			err = nil // resolved below like any other change
		}
		if err != nil || ctx.Err() != nil {
			return err
		}
		r.log.Info("reopening log file")
		r.cur.file.Close()
		r.cur.file = nil
		r.cur.pos = r.cur.offset
		r.resetLine()
		r.cur = nil
		r.unresolved = true
		r.rotWait = 0
	}
	if r.cur == nil {
		if err := r.openPath(ctx); err != nil || r.cur == nil {
			if err != nil {
				return err
			}
			return r.commit(ctx)
		}
	}
	grew, err := r.read(ctx, r.cur, false)
	if err == errReplaced {
		err = r.truncated(ctx, "first line changed")
	}
	if err != nil || ctx.Err() != nil {
		return err
	}
	if err := r.checkPath(ctx, grew); err != nil {
		return err
	}
	if r.dirty && time.Since(r.dirtySince) < r.f.SettleFor {
		return nil // a later poll commits, or Run's end
	}
	return r.commit(ctx)
}

func newFileState(file *os.File, name string) (*fileState, error) {
	fi, err := file.Stat()
	if err != nil {
		return nil, fmt.Errorf("logparse: stat %s: %w", name, err)
	}
	dev, ino := fileID(fi)
	return &fileState{file: file, name: name, dev: dev, ino: ino, size: fi.Size()}, nil
}

func sameFile(a, b *fileState) bool {
	return a.dev == b.dev && a.ino == b.ino
}

func fileID(fi os.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}

// fingerprint reads the start of file and returns its FirstLineHash ("" if
// the file does not hold a complete first line or 4096 bytes yet).
func fingerprint(file *os.File) (string, error) {
	b := make([]byte, fingerprintMax)
	n, err := file.ReadAt(b, 0)
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("logparse: read %s: %w", file.Name(), err)
	}
	return fingerprintOf(b[:n]), nil
}

// fingerprintOf returns the FirstLineHash of a file that starts with b, or
// "" if b does not determine it.
func fingerprintOf(b []byte) string {
	if i := bytes.IndexByte(b[:min(len(b), fingerprintMax)], '\n'); i >= 0 {
		return hashHex(b[:i+1])
	}
	if len(b) >= fingerprintMax {
		return hashHex(b[:fingerprintMax])
	}
	return ""
}

func hashHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
