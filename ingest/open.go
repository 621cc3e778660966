package ingest

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"
)

// openLog opens a plain or gzip-compressed file (detected by its magic
// bytes), or stdin for "-". ref is the time used to infer the year of
// traditional syslog stamps: the file's mtime.
func openLog(name string, stdin io.Reader) (io.Reader, func(), time.Time, error) {
	var (
		r   io.Reader
		c   = func() {}
		ref = time.Now()
	)
	if name == "-" {
		r = stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, nil, ref, err
		}
		if fi, err := f.Stat(); err == nil {
			ref = fi.ModTime()
		}
		r, c = f, func() { f.Close() }
	}
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(2)
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			c()
			return nil, nil, ref, fmt.Errorf("%s: %w", name, err)
		}
		zr.Multistream(true)
		return &gzipTolerant{zr: zr, name: name}, c, ref, nil
	}
	return br, c, ref, nil
}

// gzipTolerant reports a truncated .gz (a rotation caught mid-write) as EOF
// after the last complete data, rather than failing the whole import.
type gzipTolerant struct {
	zr   *gzip.Reader
	name string
}

func (g *gzipTolerant) Read(p []byte) (int, error) {
	n, err := g.zr.Read(p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return n, io.EOF
	}
	return n, err
}

// countingReader counts the bytes read through it, for the progress bar.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
