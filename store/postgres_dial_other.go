//go:build !linux

package store

import (
	"syscall"
	"time"
)

// setUserTimeout does nothing where TCP_USER_TIMEOUT does not exist: the
// keepalives still find a silent network, once the connection is idle.
func setUserTimeout(syscall.RawConn, time.Duration) error { return nil }
