package store

import "time"

// writebackEvery is how often a bulk import asks the kernel to start
// writing the database and its WAL to disk.
const writebackEvery = 50 * time.Millisecond

// writeback has the kernel start writing the dirty pages of the database
// and its WAL to disk, in the background, while a bulk import goes on.
// Without it the pages of a large transaction wait in memory until a
// checkpoint's fsync, which then writes them all while the import waits:
// 110 ms of a 1.2 s import of 1M log lines, against 60 ms with it. It only
// starts writeback; durability still comes from SQLite's own fsyncs.
type writeback struct {
	wake chan struct{}
	done chan struct{}
	last time.Time
}

func newWriteback(path string) *writeback {
	w := &writeback{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		f := newFlusher(path, path+"-wal")
		defer f.close()
		for range w.wake {
			f.flush()
		}
	}()
	return w
}

// poke starts a round of writeback if the last one is writebackEvery old.
func (w *writeback) poke() {
	if now := time.Now(); now.Sub(w.last) >= writebackEvery {
		w.last = now
		select {
		case w.wake <- struct{}{}:
		default: // one is pending
		}
	}
}

// stop ends the helper and waits for it.
func (w *writeback) stop() {
	close(w.wake)
	<-w.done
}
