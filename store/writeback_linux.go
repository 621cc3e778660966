package store

import "golang.org/x/sys/unix"

// flusher holds the files whose dirty pages it sends to disk. Files that
// cannot be opened (yet) are tried again at the next flush.
type flusher struct {
	paths []string
	fds   []int
}

func newFlusher(paths ...string) *flusher {
	f := &flusher{paths: paths, fds: make([]int, len(paths))}
	for i := range f.fds {
		f.fds[i] = -1
	}
	return f
}

// flush starts writeback of every dirty page of the files, without waiting
// for it (sync_file_range with SYNC_FILE_RANGE_WRITE). Errors are dropped:
// this is only a hint, and SQLite's fsyncs report real write failures.
func (f *flusher) flush() {
	for i, p := range f.paths {
		if f.fds[i] < 0 {
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			f.fds[i] = fd
		}
		_ = unix.SyncFileRange(f.fds[i], 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	}
}

func (f *flusher) close() {
	for _, fd := range f.fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}
