package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A file that does not exist yet (a WAL before the first write) is opened
// at a later flush, and a flush with dirty pages succeeds.
func TestFlusherOpensLate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	f := newFlusher(p)
	defer f.close()
	f.flush()
	if f.fds[0] >= 0 {
		t.Fatalf("fd %d for a file that does not exist", f.fds[0])
	}
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	f.flush()
	if f.fds[0] < 0 {
		t.Fatal("file not opened once it exists")
	}
}

// poke wakes the helper at most once per writebackEvery, and stop ends it.
func TestWritebackPoke(t *testing.T) {
	w := newWriteback(filepath.Join(t.TempDir(), "db"))
	w.poke()
	first := w.last
	if first.IsZero() {
		t.Fatal("first poke did not wake the helper")
	}
	w.poke()
	if !w.last.Equal(first) {
		t.Fatal("a second poke within writebackEvery woke the helper again")
	}
	w.last = w.last.Add(-writebackEvery - time.Millisecond)
	w.poke()
	if w.last.Equal(first.Add(-writebackEvery - time.Millisecond)) {
		t.Fatal("a poke after writebackEvery did not wake the helper")
	}
	w.stop()
	select {
	case <-w.done:
	default:
		t.Fatal("helper still running after stop")
	}
}
