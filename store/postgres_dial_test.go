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

func TestOneLine(t *testing.T) {
	in := "failed to connect to `user=u database=x`:\n\t127.0.0.1:1 (127.0.0.1): dial error: refused\n\t127.0.0.1:1 (127.0.0.1): dial error: refused\n\t127.0.0.2:2 (127.0.0.2): dial error: refused\n"
	want := "failed to connect to `user=u database=x`: 127.0.0.1:1 (127.0.0.1): dial error: refused; 127.0.0.2:2 (127.0.0.2): dial error: refused"
	if got := oneLine(in); got != want {
		t.Errorf("oneLine:\n got %q\nwant %q", got, want)
	}
	if got := oneLine("plain"); got != "plain" {
		t.Errorf("oneLine(plain) = %q", got)
	}
}
