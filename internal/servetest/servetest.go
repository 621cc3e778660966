// Package servetest serves a policy server (policyd.Server) on a real
// listener for the length of a test: the one copy of the helper that the
// tests of policyd and internal/loadgen share; and asks a policy map
// through the real Postfix client (PostmapQ), for the tests of daemon and
// cmd/mailtls; and holds the log of a process under test (SyncBuffer). It
// does not import policyd, so that policyd's own tests can use it.
package servetest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Server is what a policyd.Server does for Serve.
type Server interface {
	ServeSocketmap(ctx context.Context, ln net.Listener) error
	ServeTCPTable(ctx context.Context, ln net.Listener) error
	Shutdown(ctx context.Context) error
}

// Addr is an address to listen on: 127.0.0.1:0 for "tcp", a socket in a
// fresh short directory (ShortTempDir) for "unix".
func Addr(t testing.TB, network string) string {
	t.Helper()
	if network == "unix" {
		return filepath.Join(ShortTempDir(t), "p.sock")
	}
	return "127.0.0.1:0"
}

// ShortTempDir returns a temporary directory, removed at the end of the
// test, with a path short enough for a UNIX-domain socket (108 bytes on
// Linux).
func ShortTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if len(dir) < 80 {
		return dir
	}
	d, err := os.MkdirTemp("", "pd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Serve serves ln with srv, tcp_table when tcpTable and socketmap
// otherwise, and returns ln's address. At the end of the test it shuts
// srv down and fails the test unless both the shutdown and the serving
// ended without an error.
func Serve(t testing.TB, srv Server, ln net.Listener, tcpTable bool) string {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		if tcpTable {
			errc <- srv.ServeTCPTable(context.Background(), ln)
		} else {
			errc <- srv.ServeSocketmap(context.Background(), ln)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}
