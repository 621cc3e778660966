package logparse

// Rotation and truncation seen while running: fileRun's checkPath compares
// the open file with what Path names now at every poll; checkTruncated,
// truncated, unchanged, readCopyOf and followOriginal handle copytruncate
// and in-place rewrites (see Follower).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

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
