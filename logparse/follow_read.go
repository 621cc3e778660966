package logparse

// Reading the open file: fileRun's read, consume and feed split it into
// lines for the correlator (holding back an incomplete last line), and
// commit hands the deliveries to Commit with the checkpoint after the last
// consumed line.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// readLive reads the file at Path; content replaced meanwhile is left for
// the next poll to handle.
func (r *fileRun) readLive(ctx context.Context, s *fileState) error {
	if _, err := r.read(ctx, s, false); err != errReplaced {
		return err
	}
	return nil
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
