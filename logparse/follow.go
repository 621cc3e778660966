package logparse

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
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

// openPath opens Path when no file is open. If a remembered position is
// unresolved, it resumes in the file at Path, or finds the remembered file
// among the siblings first (see resolve).
func (r *fileRun) openPath(ctx context.Context) error {
	file, err := os.Open(r.f.Path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if !r.missing {
				r.log.Info("log file does not exist; waiting for it to appear")
				r.missing = true
			}
			if r.unresolved {
				r.unresolved = false
				return r.resolve(ctx, nil)
			}
			return nil
		}
		if msg := err.Error(); msg != r.lastOpenErr {
			r.log.Warn("cannot open log file; will retry", "err", err)
			r.lastOpenErr = msg
		}
		return nil
	}
	r.missing, r.lastOpenErr = false, ""
	live, err := newFileState(file, r.f.Path)
	if err != nil {
		file.Close()
		return err
	}
	if r.unresolved {
		r.unresolved = false
		old := r.src
		if sameFile(live, old) {
			fp, err := fingerprint(live.file)
			if err != nil {
				live.file.Close()
				return err
			}
			if (old.fp == "" || fp == old.fp) && live.size >= old.offset {
				live.fp, live.offset, live.pos = old.fp, old.offset, old.offset
				r.log.Info("resuming log file", "offset", old.offset)
				r.cur, r.src = live, live
				return nil
			}
		}
		// Rotated or truncated while we were stopped.
		if err := r.resolve(ctx, live); err != nil || r.cur != nil || ctx.Err() != nil {
			// A renamed file was adopted, or reading a copy was
			// cancelled (the checkpoint must go on describing it).
			live.file.Close()
			return err
		}
	}
	r.log.Info("following log file from its start", "inode", live.ino)
	r.cur, r.src = live, live
	return nil
}

// resolve finds the remembered file r.src among Path's siblings (the file
// at Path, live, may be nil). A file renamed by rotation becomes the current
// file again: a syslog daemon may still be writing to it, so it is read as
// on a rotation seen while running, and left for the file at Path once it
// stops growing. A copy made by copytruncate is final: it is read from the
// offset to its end, and committed.
func (r *fileRun) resolve(ctx context.Context, live *fileState) error {
	old := r.src
	if old.offset == 0 && old.fp == "" && old.ino == 0 {
		return nil
	}
	var exDev, exIno uint64
	if live != nil {
		// When Path is still the old file, truncated, only a copy
		// can hold the unread lines.
		exDev, exIno = live.dev, live.ino
	}
	sib, byID, err := r.findSibling(old, exDev, exIno)
	if err != nil {
		return err
	}
	if sib == nil {
		return r.resolveCompressed(ctx, old, exDev, exIno)
	}
	var between []string
	if fi, err := sib.file.Stat(); err == nil {
		// Files rotated after the one that renamed or copied sib:
		// read after it, before the file at Path.
		between = r.rotatedSince(fi.ModTime(), sib.dev, sib.ino)
	}
	sib.fp, sib.offset, sib.pos = old.fp, old.offset, old.offset
	r.resetLine()
	r.src = sib
	if byID && len(between) == 0 {
		r.log.Info("resuming the rotated log file; the new one follows when it stops growing",
			"file", sib.name, "offset", old.offset)
		r.cur = sib
		r.rotWait = 0
		return nil
	}
	// A copy, or a file rotated more than once since: final.
	defer sib.file.Close()
	r.log.Info("reading the rest of a rotated log file", "file", sib.name, "offset", old.offset, "size", sib.size)
	if _, err := r.read(ctx, sib, true); err != nil || ctx.Err() != nil {
		return err
	}
	if err := r.commit(ctx); err != nil {
		return err
	}
	sib.file = nil
	return r.catchUp(ctx, between)
}

// resolveCompressed finds the remembered file old among Path's
// gzip-compressed rotated siblings, by its first line, reads it from the
// remembered offset, and then the files rotated after it (see catchUp).
// When it is not there (or its first line was never known), the lines
// after the offset cannot be placed: a warning names the rotated files and
// the import command that recovers them.
func (r *fileRun) resolveCompressed(ctx context.Context, old *fileState, exDev, exIno uint64) error {
	if old.offset == 0 && old.fp == "" {
		return nil
	}
	gz, err := r.findCompressed(old)
	if err != nil {
		return err
	}
	if gz == nil {
		args := []any{"inode", old.ino, "offset", old.offset}
		if names := r.rotatedSince(time.Time{}, exDev, exIno); len(names) > 0 {
			args = append(args, "recover_with", recoverCommand(names))
		}
		r.log.Warn("checkpointed log file not found among rotated files; lines after its offset are lost unless imported", args...)
		return nil
	}
	defer gz.file.Close()
	fi, err := gz.file.Stat()
	if err != nil {
		return fmt.Errorf("logparse: stat %s: %w", gz.name, err)
	}
	between := r.rotatedSince(fi.ModTime(), gz.dev, gz.ino)
	gz.fp, gz.offset, gz.pos = old.fp, old.offset, old.offset
	r.resetLine()
	r.src = gz
	r.log.Info("reading the rest of a compressed rotated log file", "file", gz.name, "offset", old.offset)
	if err := r.skipUnreadable(gz, r.readCompressed(ctx, gz, old.offset)); err != nil || ctx.Err() != nil {
		return err
	}
	if err := r.commit(ctx); err != nil {
		return err
	}
	return r.catchUp(ctx, between)
}

// catchUp reads whole files that were rotated while the follower was
// stopped, oldest first, before it goes on with the file at Path; gzip
// files are decompressed. Each becomes the file that checkpoints describe
// while it is read, so a restart resumes inside it. The last one, if plain,
// is followed like a file renamed by a rotation seen while running (a
// syslog daemon may still be writing to it), and the file at Path follows
// once it stops growing. A file that cannot be read (another compression
// format, a corrupt gzip stream) is skipped with a warning giving the
// command that imports it: it must not keep the follower from the live log.
func (r *fileRun) catchUp(ctx context.Context, names []string) error {
	for i, name := range names {
		if ctx.Err() != nil {
			return nil
		}
		file, err := os.Open(name)
		if err != nil {
			r.log.Warn("cannot open a log file rotated while the follower was stopped; its lines are lost unless imported",
				"file", name, "err", err, "recover_with", recoverCommand([]string{name}))
			continue
		}
		compressed, ok := isGzip(file)
		if !ok {
			file.Close()
			r.log.Warn("cannot read this compressed log file; decompress it and import it",
				"file", name, "recover_with", recoverCommand([]string{name}))
			continue
		}
		s, err := newFileState(file, name)
		if err != nil {
			file.Close()
			return err
		}
		r.resetLine()
		r.src = s
		if !compressed && i == len(names)-1 {
			r.log.Info("following the last log file rotated while the follower was stopped; the new one follows when it stops growing", "file", name)
			r.cur = s
			r.rotWait = 0
			return nil
		}
		r.log.Info("reading a log file rotated while the follower was stopped", "file", name)
		if compressed {
			err = r.readCompressed(ctx, s, 0)
		} else {
			_, err = r.read(ctx, s, true)
		}
		file.Close()
		s.file = nil
		if err = r.skipUnreadable(s, err); err != nil || ctx.Err() != nil {
			return err
		}
		if err := r.commit(ctx); err != nil {
			return err
		}
	}
	return nil
}

// skipUnreadable turns an error reading rotated file s (not a failed
// commit) into a warning: the lines read so far stay pending, the rest of
// the file is named with the command that imports it.
func (r *fileRun) skipUnreadable(s *fileState, err error) error {
	if err == nil || errors.Is(err, ErrCommit) {
		return err
	}
	r.log.Warn("cannot read the rest of a rotated log file; its remaining lines are lost unless imported (lines already stored are skipped)",
		"file", s.name, "err", err, "recover_with", recoverCommand([]string{s.name}))
	r.resetLine()
	return nil
}

// readCompressed reads the gzip file s to its end from offset skip of the
// decompressed content, as read does for a final plain file.
func (r *fileRun) readCompressed(ctx context.Context, s *fileState, skip int64) error {
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("logparse: read %s: %w", s.name, err)
	}
	zr, err := gzip.NewReader(s.file)
	if err != nil {
		return fmt.Errorf("logparse: read %s: %w", s.name, err)
	}
	if n, err := io.CopyN(io.Discard, zr, skip); err != nil {
		return fmt.Errorf("logparse: read %s: only %d of the %d bytes already read: %w", s.name, n, skip, err)
	}
	s.pos, s.offset = skip, skip
	for ctx.Err() == nil {
		n, err := zr.Read(r.buf)
		if n > 0 {
			if cerr := r.consume(ctx, s, r.buf[:n]); cerr != nil {
				return cerr
			}
			if r.dirty && time.Since(r.dirtySince) >= r.batchEvery {
				if cerr := r.commit(ctx); cerr != nil {
					return cerr
				}
			}
		}
		if err == io.EOF {
			r.finish(s)
			return nil
		}
		if err != nil {
			return fmt.Errorf("logparse: read %s: %w", s.name, err)
		}
	}
	return nil
}

// isGzip reports whether file starts with the gzip magic (compressed), and
// false for ok when it has the name of another compression format.
func isGzip(file *os.File) (compressed, ok bool) {
	var magic [2]byte
	if n, _ := file.ReadAt(magic[:], 0); n == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return true, true
	}
	return false, !isCompressedName(file.Name())
}

// findCompressed returns the open gzip-compressed rotated sibling of Path
// whose decompressed content starts with old's first line.
func (r *fileRun) findCompressed(old *fileState) (*fileState, error) {
	if old.fp == "" {
		return nil, nil
	}
	dir, base, ents := r.siblings()
	for _, e := range ents {
		name := e.Name()
		if !isRotatedAny(base, name) || isRotatedName(base, name) {
			continue
		}
		file, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		if compressed, _ := isGzip(file); compressed {
			if zr, err := gzip.NewReader(file); err == nil {
				b := make([]byte, fingerprintMax)
				n, _ := io.ReadFull(zr, b)
				if fingerprintOf(b[:n]) == old.fp {
					s, err := newFileState(file, file.Name())
					if err != nil {
						file.Close()
					}
					return s, err
				}
			}
		}
		file.Close()
	}
	return nil, nil
}

// findSibling returns the open sibling of Path that holds old's content:
// the same device and inode (and first line, when known; byID), else the
// same first line; in both cases at least old.offset long. The file with
// identity excludeDev, excludeIno is never returned.
func (r *fileRun) findSibling(old *fileState, excludeDev, excludeIno uint64) (sib *fileState, byID bool, err error) {
	dir, base, ents := r.siblings()
	var withID, byFP *fileState
	for _, e := range ents {
		name := e.Name()
		if !isRotatedName(base, name) {
			continue
		}
		file, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		s, err := newFileState(file, file.Name())
		keep := false
		if err == nil && s.size >= old.offset && (s.dev != excludeDev || s.ino != excludeIno) {
			fp, ferr := fingerprint(file)
			switch {
			case ferr != nil:
			case s.dev == old.dev && s.ino == old.ino && (old.fp == "" || fp == old.fp):
				if withID == nil {
					withID, keep = s, true
				}
			case old.fp != "" && fp == old.fp:
				// Of several copies, prefer the longest.
				if byFP == nil || s.size > byFP.size {
					if byFP != nil {
						byFP.file.Close()
					}
					byFP, keep = s, true
				}
			}
		}
		if !keep {
			file.Close()
		}
	}
	if withID != nil {
		if byFP != nil {
			byFP.file.Close()
		}
		return withID, true, nil
	}
	return byFP, false, nil
}

// rotatedSince returns the paths of Path's rotated siblings, compressed or
// not, modified after since, oldest first; the file with identity
// exDev/exIno and the file at Path are left out.
func (r *fileRun) rotatedSince(since time.Time, exDev, exIno uint64) []string {
	dir, base, ents := r.siblings()
	type rotated struct {
		path string
		mod  time.Time
	}
	var found []rotated
	for _, e := range ents {
		name := e.Name()
		if !isRotatedAny(base, name) {
			continue
		}
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() || !fi.ModTime().After(since) {
			continue
		}
		if dev, ino := fileID(fi); dev == exDev && ino == exIno {
			continue
		}
		found = append(found, rotated{path, fi.ModTime()})
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].mod.Before(found[j].mod) })
	out := make([]string, len(found))
	for i, f := range found {
		out[i] = f.path
	}
	return out
}

// siblings lists the directory of Path: the directory, Path's base name and
// the entries. A listing error is logged and leaves no entries.
func (r *fileRun) siblings() (dir, base string, ents []os.DirEntry) {
	dir, base = filepath.Split(r.f.Path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		r.log.Warn("cannot list rotated log files", "err", err)
	}
	return dir, base, ents
}

// isRotatedAny reports whether name looks like a rotated copy of base,
// compressed or not: base.anything or base-anything.
func isRotatedAny(base, name string) bool {
	return name != base && (strings.HasPrefix(name, base+".") || strings.HasPrefix(name, base+"-"))
}

// isRotatedName reports whether name looks like a rotated, uncompressed
// copy of base: base.N, base-DATE, base.anything.
func isRotatedName(base, name string) bool {
	return isRotatedAny(base, name) && !isCompressedName(name)
}

// recoverCommand is the shell command that imports files in order:
// mailtls import reads plain and gzip files; others are piped through
// their decompressor.
func recoverCommand(files []string) string {
	var cmds, run []string
	flush := func() {
		if len(run) > 0 {
			cmds = append(cmds, "mailtls import "+strings.Join(run, " "))
			run = nil
		}
	}
	for _, f := range files {
		ext := strings.ToLower(filepath.Ext(f))
		if ext == ".gz" || !isCompressedName(f) {
			run = append(run, f)
			continue
		}
		flush()
		cat := map[string]string{".xz": "xzcat", ".lzma": "xzcat", ".bz2": "bzcat", ".zst": "zstdcat", ".lz4": "lz4cat",
			".lz": "lzip -dc", ".z": "uncompress -c", ".zip": "unzip -p", ".br": "brotli -dc", ".7z": "7z x -so"}[ext]
		cmds = append(cmds, cat+" "+f+" | mailtls import -")
	}
	flush()
	return strings.Join(cmds, " && ")
}

// isCompressedName reports whether name ends like a compressed file's.
func isCompressedName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".gz", ".bz2", ".xz", ".zst", ".lz4", ".lzma", ".lz", ".z", ".zip", ".br", ".7z":
		return true
	}
	return false
}

// checkPath compares the open file with what Path names now and handles
// rotation and truncation.
func (r *fileRun) checkPath(ctx context.Context, grew bool) error {
	fi, err := os.Stat(r.f.Path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if !r.missing {
				r.log.Info("log file is gone; reading the open file until a new one appears")
				r.missing = true
			}
			return r.checkTruncated(ctx)
		}
		if msg := err.Error(); msg != r.lastOpenErr {
			r.log.Warn("cannot stat log file; will retry", "err", err)
			r.lastOpenErr = msg
		}
		return nil
	}
	r.missing, r.lastOpenErr = false, ""
	dev, ino := fileID(fi)
	if dev == r.cur.dev && ino == r.cur.ino {
		return r.checkTruncated(ctx)
	}
	// Rotated. A syslog daemon keeps writing to the old file until it
	// reopens; give it a few polls.
	if r.next == nil || r.next.dev != dev || r.next.ino != ino || r.next.fp == "" {
		r.next = peekFile(r.f.Path, dev, ino)
	}
	if grew && r.rotWait < rotationGracePolls {
		r.rotWait++
		return nil
	}
	if grew {
		r.log.Warn("rotated log file is still being written to; switching to the new one anyway")
	}
	r.rotWait = 0
	if found, err := r.followOriginal(ctx); found || err != nil {
		return err
	}
	if _, err := r.read(ctx, r.cur, true); err != nil || ctx.Err() != nil {
		return err
	}
	if err := r.commit(ctx); err != nil {
		return err
	}
	file, err := os.Open(r.f.Path)
	if err != nil {
		// Gone again; the next poll finds whatever comes next, and
		// recovers nothing (the old file has been read to its end).
		r.log.Info("log file rotated; new file not readable yet", "err", err)
		r.cur.file.Close()
		r.cur.file = nil
		r.cur = nil
		return nil
	}
	live, err := newFileState(file, r.f.Path)
	if err != nil {
		file.Close()
		return err
	}
	r.log.Info("log file rotated; following the new file", "old_inode", r.cur.ino, "inode", live.ino)
	r.cur.file.Close()
	r.cur = live
	r.src = live
	seen := r.next
	r.next = nil
	if err := r.readCopyOf(ctx, seen, live); err != nil || ctx.Err() != nil {
		return err
	}
	return r.readLive(ctx, live)
}

// peekFile returns the identity, first line and size of the file at path,
// if it is still the file dev/ino; nil if it cannot be read.
func peekFile(path string, dev, ino uint64) *fileState {
	file, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer file.Close()
	s, err := newFileState(file, path)
	if err != nil || s.dev != dev || s.ino != ino {
		return nil
	}
	if s.fp, err = fingerprint(file); err != nil {
		return nil
	}
	s.file = nil
	return s
}

// readCopyOf handles a file at Path that was truncated by copytruncate
// after it was first seen (seen) but before the follower switched to it
// from the renamed file: the lines it had are read from its copy, whole,
// before the file itself (live) is read from 0. Without a copy, a warning
// says how many bytes are lost.
func (r *fileRun) readCopyOf(ctx context.Context, seen, live *fileState) error {
	if seen == nil || seen.fp == "" || !sameFile(seen, live) {
		return nil
	}
	fp, err := fingerprint(live.file)
	if err != nil {
		return err
	}
	if fp == seen.fp && live.size >= seen.size {
		return nil
	}
	sib, _, err := r.findSibling(&fileState{fp: seen.fp}, live.dev, live.ino)
	if err != nil || sib == nil {
		if err == nil {
			r.log.Warn("new log file truncated before it was read and no rotated copy with its first line found; its lines are lost",
				"unread_bytes_at_least", seen.size)
		}
		return err
	}
	r.log.Info("new log file truncated before it was read; reading its copy", "file", sib.name)
	sib.fp = seen.fp
	r.src = sib
	_, err = r.read(ctx, sib, true)
	sib.file.Close()
	sib.file = nil
	if err != nil || ctx.Err() != nil {
		return err
	}
	if err := r.commit(ctx); err != nil {
		return err
	}
	r.src = live
	return nil
}

// followOriginal handles a rotated file r.cur that is a copytruncate copy
// of the file at Path made before the truncation (a restart can find it so,
// see catchUp): the file at Path has the same first line and holds at least
// what was consumed of the copy. The file at Path then goes on from the
// copy's offset, so the copied lines are not read twice and a last line the
// copy holds only in part is not fed; its truncation is handled as usual.
// It reports whether it switched.
func (r *fileRun) followOriginal(ctx context.Context) (bool, error) {
	cur := r.cur
	if cur.fp == "" {
		return false, nil
	}
	file, err := os.Open(r.f.Path)
	if err != nil {
		return false, nil // the caller's open reports it
	}
	live, err := newFileState(file, r.f.Path)
	if err != nil {
		file.Close()
		return false, err
	}
	fp, err := fingerprint(file)
	if err != nil || fp != cur.fp || live.size < cur.offset {
		file.Close()
		return false, err
	}
	r.log.Info("the rotated file is a copy of the log file, not truncated yet; following the log file from the same offset",
		"file", cur.name, "offset", cur.offset)
	live.fp, live.offset, live.pos = cur.fp, cur.offset, cur.offset
	r.resetLine()
	cur.file.Close()
	r.cur, r.src = live, live
	return true, r.readLive(ctx, live)
}

// readLive reads the file at Path; content replaced meanwhile is left for
// the next poll to handle.
func (r *fileRun) readLive(ctx context.Context, s *fileState) error {
	if _, err := r.read(ctx, s, false); err != errReplaced {
		return err
	}
	return nil
}

// checkTruncated detects copytruncate (and any in-place rewrite) of the open
// file, which read may not have noticed: it reads nothing when the file
// shrank below the read position.
func (r *fileRun) checkTruncated(ctx context.Context) error {
	cur := r.cur
	fi, err := cur.file.Stat()
	if err != nil {
		return fmt.Errorf("logparse: stat %s: %w", cur.name, err)
	}
	if fi.Size() < cur.pos {
		return r.truncated(ctx, "smaller than the read position")
	}
	same, err := r.unchanged(cur)
	if err != nil {
		return err
	}
	if !same {
		return r.truncated(ctx, "first line changed")
	}
	cur.size = fi.Size()
	return nil
}

// unchanged reports whether the file at s still starts as it did when its
// lines were read: the same first line, or the same held first bytes.
func (r *fileRun) unchanged(s *fileState) (bool, error) {
	switch {
	case s.fp != "":
		fp, err := fingerprint(s.file)
		return fp == s.fp, err
	case s.offset == 0 && len(r.lines.pending()) > 0:
		held := r.lines.pending()
		b := make([]byte, len(held))
		n, err := s.file.ReadAt(b, 0)
		if err != nil && err != io.EOF {
			return false, fmt.Errorf("logparse: read %s: %w", s.name, err)
		}
		return n == len(b) && bytes.Equal(b, held), nil
	}
	return true, nil
}

// truncated handles the truncation of the open file: the lines after the
// offset that only a copy still holds are read from the copy, then the file
// is read from 0.
func (r *fileRun) truncated(ctx context.Context, why string) error {
	cur := r.cur
	size := int64(-1)
	if fi, err := cur.file.Stat(); err == nil {
		size = fi.Size()
	}
	r.log.Info("log file truncated", "reason", why, "offset", cur.offset, "size", size)
	old := *cur
	old.file = nil
	known := max(old.size, old.pos) - old.offset // unread bytes we saw before
	r.resetLine()
	found := false
	if old.fp != "" {
		sib, _, err := r.findSibling(&old, cur.dev, cur.ino)
		if err != nil {
			return err
		}
		if sib != nil {
			found = true
			r.log.Info("reading the rest of the truncated log from its copy", "file", sib.name, "offset", old.offset)
			sib.fp, sib.offset, sib.pos = old.fp, old.offset, old.offset
			r.src = sib
			_, err := r.read(ctx, sib, true)
			sib.file.Close()
			sib.file = nil
			if err != nil || ctx.Err() != nil {
				return err
			}
			if err := r.commit(ctx); err != nil {
				return err
			}
		}
	}
	if !found && (old.fp != "" || known > 0) {
		r.log.Warn("log file truncated and no rotated copy with its first line found; lines written after the last read are lost",
			"unread_bytes_at_least", known)
	}
	cur.fp, cur.offset, cur.pos, cur.size = "", 0, 0, max(size, 0)
	r.src = cur
	return r.readLive(ctx, cur)
}

// errReplaced reports that the file being read no longer holds the content
// it had: it was truncated, and maybe rewritten, under the reader.
var errReplaced = errors.New("logparse: file content replaced")

// read reads s from s.pos to its end, feeding complete lines. With final,
// a last line without newline is fed too: the file will not grow again.
// Otherwise s is the live file, which may be truncated and rewritten at any
// time: after each read, its start is compared with what was read before,
// and if it changed, the bytes just read are dropped and read returns
// errReplaced. It reports whether it read any bytes. It stops early,
// returning nil, when ctx is done.
func (r *fileRun) read(ctx context.Context, s *fileState, final bool) (bool, error) {
	grew := false
	for ctx.Err() == nil {
		n, err := s.file.ReadAt(r.buf, s.pos)
		if n > 0 && !final {
			// Checked after reading: if the start is still the
			// same now, the bytes read came from the same content.
			same, uerr := r.unchanged(s)
			if uerr != nil {
				return grew, uerr
			}
			if !same {
				return grew, errReplaced
			}
		}
		if n > 0 {
			grew = true
			if cerr := r.consume(ctx, s, r.buf[:n]); cerr != nil {
				return grew, cerr
			}
			if r.dirty && time.Since(r.dirtySince) >= r.batchEvery {
				if cerr := r.commit(ctx); cerr != nil {
					return grew, cerr
				}
			}
		}
		if err == io.EOF {
			if final {
				r.finish(s)
			}
			s.size = max(s.size, s.pos)
			return grew, nil
		}
		if err != nil {
			return grew, fmt.Errorf("logparse: read %s: %w", s.name, err)
		}
	}
	return grew, nil
}

// consume splits data, which starts at s.pos, into lines.
func (r *fileRun) consume(ctx context.Context, s *fileState, data []byte) error {
	for len(data) > 0 {
		line, used, kind := r.lines.next(data)
		s.pos += int64(used)
		data = data[used:]
		r.noteFingerprint(s, line, kind)
		if kind == splitNone {
			return nil
		}
		r.feed(line, kind)
		s.offset = s.pos
		if len(r.pending) >= r.maxBatch {
			if err := r.commit(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// noteFingerprint sets s.fp, while it is unknown and the line being read is
// the file's first, once what has been read of it determines it: the
// complete line (and its newline), or its first fingerprintMax bytes.
func (r *fileRun) noteFingerprint(s *fileState, line []byte, kind splitKind) {
	if s.fp != "" || s.offset != 0 {
		return
	}
	switch kind {
	case splitNone:
		s.fp = fingerprintOf(r.lines.pending())
	case splitOK:
		if len(line) < fingerprintMax {
			s.fp = hashHex(append(bytes.Clone(line), '\n'))
		} else {
			s.fp = hashHex(line[:fingerprintMax])
		}
	case splitTooLong:
		s.fp = fingerprintOf(line) // its first headLen bytes
	}
}

// finish feeds the held last line of a file that will not grow.
func (r *fileRun) finish(s *fileState) {
	line, kind := r.lines.flush()
	if kind == splitNone {
		return
	}
	r.feed(line, kind)
	s.offset = s.pos
	r.resetLine()
}

func (r *fileRun) resetLine() {
	r.lines.reset()
}

// feed feeds one line, or counts a line longer than maxLine as skipped.
// The first line the correlator skips is logged once, quoted, so that a
// user sees why lines are skipped.
func (r *fileRun) feed(line []byte, kind splitKind) {
	if kind == splitTooLong {
		r.corr.SkipLine(line)
	} else {
		r.pending = append(r.pending, r.corr.Feed(trimCR(line))...)
	}
	if !r.skipLogged && r.corr.haveSkipped {
		// The handler quotes the value, escaping control characters.
		r.skipLogged = true
		args := []any{"line", toString(r.corr.firstSkipped[:min(len(r.corr.firstSkipped), quoteMax)])}
		if r.corr.firstSkippedLong {
			args = append(args, "longer_than_bytes", r.maxLine)
		}
		r.log.Warn("a log line was not understood and is skipped; further ones are only counted", args...)
	}
	r.markDirty()
}

func (r *fileRun) markDirty() {
	if !r.dirty {
		r.dirty = true
		r.dirtySince = time.Now()
	}
}

// commit hands the pending deliveries and the checkpoint after the last
// consumed line to Commit. It is not interrupted by the cancellation of ctx:
// the final commit happens after it.
func (r *fileRun) commit(ctx context.Context) error {
	if !r.dirty {
		return nil
	}
	state, err := r.corr.MarshalState()
	if err != nil {
		return fmt.Errorf("logparse: correlator state: %w", err)
	}
	s := r.src
	b := Batch{
		Deliveries: r.pending,
		Checkpoint: Checkpoint{
			Path: r.f.Path, Dev: s.dev, Ino: s.ino, Offset: s.offset,
			FirstLineHash: s.fp, State: state,
		},
		Stats: r.corr.Stats(),
	}
	if err := r.commitFn(context.WithoutCancel(ctx), b); err != nil {
		return fmt.Errorf("%w: %w", ErrCommit, err)
	}
	r.pending = nil
	r.dirty = false
	return nil
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
