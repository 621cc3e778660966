//go:build !linux

package store

// flusher does nothing where sync_file_range does not exist.
type flusher struct{}

func newFlusher(...string) *flusher { return &flusher{} }
func (*flusher) flush()             {}
func (*flusher) close()             {}
