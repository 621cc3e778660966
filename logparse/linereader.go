package logparse

import (
	"bytes"
	"io"
	"strconv"
)

// lineSplitter is the one line reader of import (LineReader) and of the
// file follower: it splits a byte stream into lines at "\n" and refuses
// lines longer than its cap, so that memory stays bounded whatever the
// input. A line longer than the cap is read to its newline and reported as
// too long, never merged with the line after it; its first bytes are kept
// (headLen), for a message and for the file fingerprint.
type lineSplitter struct {
	max        int    // the longest line, without its newline
	held       []byte // the current line so far; its first headLen bytes while discarding
	discarding bool   // the current line is longer than max
	complete   bool   // the last next or flush returned a whole line
}

// headLen is how much of a too-long line is kept: enough for the file
// fingerprint (Checkpoint.FirstLineHash).
const headLen = fingerprintMax

type splitKind uint8

const (
	splitNone    splitKind = iota // data ended inside a line, which is held
	splitOK                       // a line of at most max bytes
	splitTooLong                  // a longer line; the line returned is its start
)

func newLineSplitter(max int) lineSplitter {
	return lineSplitter{max: max}
}

// next splits the first line off data. It returns how many bytes of data
// it consumed: through the first newline, or all of data when it holds
// none (kind splitNone; the bytes are held for the next call). The line is
// valid until the next call.
func (s *lineSplitter) next(data []byte) (line []byte, used int, kind splitKind) {
	if s.complete {
		s.reset()
	}
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		s.add(data)
		return nil, len(data), splitNone
	}
	s.complete = true
	switch {
	case s.discarding || len(s.held)+i > s.max:
		s.add(data[:i])
		s.discarding = true
		return s.held, i + 1, splitTooLong
	case len(s.held) > 0:
		s.held = append(s.held, data[:i]...)
		return s.held, i + 1, splitOK
	}
	return data[:i], i + 1, splitOK
}

// flush returns the held rest of a stream that has ended: a last line
// without a newline (splitNone when there is none).
func (s *lineSplitter) flush() ([]byte, splitKind) {
	if s.complete || len(s.held) == 0 && !s.discarding {
		return nil, splitNone
	}
	s.complete = true
	if s.discarding {
		return s.held, splitTooLong
	}
	return s.held, splitOK
}

// pending returns the start of an incomplete line: the bytes held.
func (s *lineSplitter) pending() []byte {
	if s.complete {
		return nil
	}
	return s.held
}

func (s *lineSplitter) reset() {
	s.held = s.held[:0]
	s.discarding = false
	s.complete = false
}

func (s *lineSplitter) add(b []byte) {
	if !s.discarding && len(s.held)+len(b) > s.max {
		s.discarding = true
		if len(s.held) > headLen {
			s.held = s.held[:headLen]
		}
	}
	if s.discarding {
		b = b[:min(len(b), headLen-len(s.held))]
	}
	s.held = append(s.held, b...)
}

// LineReader reads the lines of a log for "mailtls import" by the rules of
// the file follower: lines end at "\n" (a "\r" before it is dropped), a
// last line without newline counts, and a line longer than MaxLineLen is
// reported as too long rather than kept in memory.
type LineReader struct {
	r    io.Reader
	sp   lineSplitter
	buf  []byte
	data []byte // unread part of buf
	err  error
}

// NewLineReader returns a LineReader of r.
func NewLineReader(r io.Reader) *LineReader {
	return &LineReader{r: r, sp: newLineSplitter(MaxLineLen), buf: make([]byte, readChunk)}
}

// Next returns the next line without its newline. For a line longer than
// MaxLineLen, tooLong is true and line is its start, for a message; hand it
// to Correlator.SkipLine. After the last line, err is io.EOF, or the read
// error that ended the input. The line is valid until the next call.
func (l *LineReader) Next() (line []byte, tooLong bool, err error) {
	for {
		if len(l.data) > 0 {
			line, used, kind := l.sp.next(l.data)
			l.data = l.data[used:]
			if kind != splitNone {
				return lineOf(line, kind)
			}
		}
		if l.err != nil {
			line, kind := l.sp.flush()
			if kind != splitNone {
				return lineOf(line, kind)
			}
			return nil, false, l.err
		}
		n, err := l.r.Read(l.buf)
		l.data = l.buf[:n]
		l.err = err
	}
}

func lineOf(line []byte, kind splitKind) ([]byte, bool, error) {
	if kind == splitTooLong {
		return line, true, nil
	}
	return trimCR(line), false, nil
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// quoteMax is how much of a skipped line QuoteLine shows.
const quoteMax = 200

// QuoteLine returns the start of a log line as a Go string literal, with
// control characters and invalid UTF-8 escaped, for messages.
func QuoteLine(b []byte) string {
	if len(b) > quoteMax {
		return strconv.Quote(string(b[:quoteMax])) + "..."
	}
	return strconv.Quote(string(b))
}
