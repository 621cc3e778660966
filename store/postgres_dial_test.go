package store

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPGDialSetsTimeouts: TCP connections to PostgreSQL fail a write not
// acknowledged within pgUserTimeout, and probe when idle, so that a silent
// network fails the statement rather than blocking it for minutes.
func TestPGDialSetsTimeouts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			<-time.After(5 * time.Second) // held open until the test closes the listener's peer
		}
	}()
	c, err := pgDial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ut, ka int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		if ut, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT); gerr != nil {
			return
		}
		ka, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if ut != int(pgUserTimeout/time.Millisecond) || ka != 1 {
		t.Errorf("TCP_USER_TIMEOUT %d ms, SO_KEEPALIVE %d; want %d ms and 1", ut, ka, pgUserTimeout/time.Millisecond)
	}
}
