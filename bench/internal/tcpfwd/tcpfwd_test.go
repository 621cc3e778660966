package tcpfwd

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echo starts a line echo server and returns its address.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(c net.Conn, msg string, wait time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(wait))
	return bufio.NewReader(c).ReadString('\n')
}

func TestCutAndRestore(t *testing.T) {
	srv := echo(t)
	f, err := Listen("127.0.0.1:0", func() (net.Conn, error) { return net.Dial("tcp", srv) })
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	if got, err := roundTrip(before, "one", 5*time.Second); err != nil || got != "one\n" {
		t.Fatalf("before the cut: %q, %v", got, err)
	}

	f.Cut()
	// The connection stays open and carries nothing.
	if got, err := roundTrip(before, "two", 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("open connection in the cut: %q, %v; want a read timeout", got, err)
	}
	// A new one is accepted and hears nothing.
	during, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatalf("connect in the cut: %v (want accepted)", err)
	}
	defer during.Close()
	if got, err := roundTrip(during, "three", 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("new connection in the cut: %q, %v; want a read timeout", got, err)
	}

	if n := f.Restore(); n != 2 {
		t.Errorf("Restore closed %d connections, want 2", n)
	}
	for name, c := range map[string]net.Conn{"before": before, "during": during} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("connection from %s the cut after Restore: read %v, want it closed", name, err)
		}
	}
	after, err := net.Dial("tcp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if got, err := roundTrip(after, "four", 5*time.Second); err != nil || got != "four\n" {
		t.Errorf("after Restore: %q, %v", got, err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
