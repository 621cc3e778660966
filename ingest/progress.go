package ingest

import (
	"bytes"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/mailtls/mailtls/output"
)

// startProgress draws a progress bar on a terminal until stopped.
func startProgress(w io.Writer, read *atomic.Int64, total int64) func() {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
				drawProgress(w, read.Load(), total)
			}
		}
	}()
	return func() { close(done); <-finished }
}

// drawProgress redraws the bar: n of total bytes read, or only n when the
// total is not known (stdin).
func drawProgress(w io.Writer, n, total int64) {
	if total <= 0 {
		fmt.Fprintf(w, "\r%s read", HumanBytes(n))
		return
	}
	frac := min(float64(n)/float64(total), 1)
	const width = 30
	full := int(frac * width)
	fmt.Fprintf(w, "\r[%s%s] %3.0f%%  %s", bytes.Repeat([]byte("#"), full), bytes.Repeat([]byte("."), width-full), frac*100, HumanBytes(n))
}

// HumanBytes is n bytes in B, KiB, MiB or GiB, for people (as every
// command prints a size).
func HumanBytes(n int64) string { return output.Bytes(n) }
