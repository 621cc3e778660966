package policyd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/servetest"
)

// testOverrides is the table most server tests use.
var testOverrides = []Override{
	{Key: "example.com", Policy: "encrypt protocols=>=TLSv1.2"},
	{Key: ".corp.example", Policy: "verify match=hostname"},
	{Key: "[mx.example.net]:587", Policy: "secure"},
	{Key: "bücher.example", Policy: "dane"},
}

func newTestServer(t testing.TB, def string) *Server {
	t.Helper()
	tab := NewTable(def)
	tab.Store(NewSnapshot(testOverrides, def))
	return &Server{
		Table:       tab,
		IdleTimeout: 10 * time.Second,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// listen starts srv on a fresh listener ("tcp" on 127.0.0.1:0, or "unix"
// in a temporary directory) and shuts it down at the end of the test.
func listen(t testing.TB, srv *Server, network string, proto protocol) (string, string) {
	t.Helper()
	ln, err := Listen(context.Background(), network, servetest.Addr(t, network), 0)
	if err != nil {
		t.Fatal(err)
	}
	return network, servetest.Serve(t, srv, ln, proto == protoTCPTable)
}

// client is a test client holding one persistent connection.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, network, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func netstring(s string) string { return fmt.Sprintf("%d:%s,", len(s), s) }

func (c *client) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, raw); err != nil {
		c.t.Fatal(err)
	}
}

// reply reads one netstring reply.
func (c *client) reply() string {
	c.t.Helper()
	var scratch []byte
	b, err := ReadNetstring(c.br, MaxReply, &scratch)
	if err != nil {
		c.t.Fatalf("reading reply: %v", err)
	}
	return string(b)
}

func (c *client) query(q string) string {
	c.t.Helper()
	c.send(netstring(q))
	return c.reply()
}

// line reads one tcp_table reply line, without its newline.
func (c *client) line() string {
	c.t.Helper()
	s, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading reply line: %v (got %q)", err, s)
	}
	return strings.TrimSuffix(s, "\n")
}

// closed asserts that the server closes the connection, allowing only
// the given bytes to arrive first.
func (c *client) closed(wantFirst string) {
	c.t.Helper()
	rest, err := io.ReadAll(c.br)
	if err != nil && !isConnReset(err) {
		c.t.Fatalf("waiting for close: %v", err)
	}
	if string(rest) != wantFirst {
		c.t.Errorf("before close got %q, want %q", rest, wantFirst)
	}
}

func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func TestSocketmapPipe(t *testing.T) {
	srv := newTestServer(t, "may")
	s, c := net.Pipe()
	done := make(chan struct{})
	go func() { srv.serveConn(context.Background(), s, protoSocketmap); close(done) }()
	cl := &client{t: t, c: c, br: bufio.NewReader(c)}
	tests := []struct{ req, want string }{
		{"tlspolicy example.com", "OK encrypt protocols=>=TLSv1.2"},
		{"tlspolicy EXAMPLE.COM", "OK encrypt protocols=>=TLSv1.2"},
		{"tlspolicy a.b.corp.example", "OK verify match=hostname"},
		{"tlspolicy corp.example", "OK may"},
		{"tlspolicy [mx.example.net]:587", "OK secure"},
		{"tlspolicy bücher.example", "OK dane"},
		{"tlspolicy ", "PERM invalid key: empty (want a next-hop destination such as example.com or [192.0.2.1]:25)"},
		{"tlspolicy a\x00b.example", "PERM invalid key: contains byte 0x00 (spaces and control characters are not allowed)"},
		{"tlspolicy a.example\n", "PERM invalid key: contains byte 0x0a (spaces and control characters are not allowed)"},
		{"tlspolicy a b.example", "PERM invalid key: contains byte 0x20 (spaces and control characters are not allowed)"},
		{"tlspolicy " + strings.Repeat("a", 513), "PERM invalid key: 513 bytes long (a destination is at most 512)"},
		{"tlspolicy " + strings.Repeat("a", 500) + ".example", "OK may"},
		{"other example.com", "PERM unknown map name (want tlspolicy)"},
		{"tlspolicy", "PERM malformed request (want \"name key\")"},
		{"", "PERM malformed request (want \"name key\")"},
	}
	for _, tt := range tests {
		if got := cl.query(tt.req); got != tt.want {
			t.Errorf("query %q = %q, want %q", tt.req, got, tt.want)
		}
	}
	c.Close()
	<-done
}

func TestSocketmapNotFoundAndTemp(t *testing.T) {
	srv := newTestServer(t, "")
	_, addr := listen(t, srv, "tcp", protoSocketmap)
	cl := dial(t, "tcp", addr)
	if got := cl.query("tlspolicy nowhere.example"); got != "NOTFOUND " {
		t.Errorf("got %q, want NOTFOUND with a trailing space", got)
	}
	if got := cl.query("tlspolicy x.corp.example"); got != "OK verify match=hostname" {
		t.Errorf("got %q", got)
	}
	// A table that was never loaded defers mail instead of answering the default.
	srv2 := &Server{Table: NewTable("may")}
	_, addr2 := listen(t, srv2, "tcp", protoSocketmap)
	cl2 := dial(t, "tcp", addr2)
	if got := cl2.query("tlspolicy example.com"); got != "TEMP policy table not loaded yet" {
		t.Errorf("unloaded table: got %q", got)
	}
}

func TestSocketmapPersistentTCPAndUnix(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			srv := newTestServer(t, "may")
			_, addr := listen(t, srv, network, protoSocketmap)
			cl := dial(t, network, addr)
			keys := []string{"example.com", "x.corp.example", "elsewhere.example", "[mx.example.net]:587"}
			wants := []string{"OK encrypt protocols=>=TLSv1.2", "OK verify match=hostname", "OK may", "OK secure"}
			for i := 0; i < 2000; i++ {
				if got := cl.query("tlspolicy " + keys[i%4]); got != wants[i%4] {
					t.Fatalf("request %d: got %q, want %q", i, got, wants[i%4])
				}
			}
			// Pipelined: many requests in one write, answered in order.
			var b strings.Builder
			for i := 0; i < 500; i++ {
				b.WriteString(netstring("tlspolicy " + keys[i%4]))
			}
			cl.send(b.String())
			for i := 0; i < 500; i++ {
				if got := cl.reply(); got != wants[i%4] {
					t.Fatalf("pipelined reply %d: got %q, want %q", i, got, wants[i%4])
				}
			}
		})
	}
}

func TestSocketmapMalformed(t *testing.T) {
	srv := newTestServer(t, "may")
	_, addr := listen(t, srv, "tcp", protoSocketmap)
	perm := func(reason string) string { return netstring("PERM policyd: malformed netstring: " + reason) }
	tests := []struct {
		name, send, want string
	}{
		{"length over 10000", "10001:", perm("longer than the limit")},
		{"huge length", "99999999999999999999999:", perm("longer than the limit")},
		{"non-digit length", "abc:def,", perm("length is not a decimal number")},
		{"negative length", "-5:hello,", perm("length is not a decimal number")},
		{"space in length", " 5:hello,", perm("length is not a decimal number")},
		{"leading zero", "05:hello,", perm("length has a leading zero")},
		{"missing colon", "5hello,", perm("length is not a decimal number")},
		{"missing length", ":hello,", perm("missing length")},
		{"missing comma", "5:hello!", perm("missing trailing comma")},
		{"length too short", "3:hello,", perm("missing trailing comma")},
		{"binary garbage", "\x00\xff\xfe\x80garbage\r\n", perm("length is not a decimal number")},
		{"http", "GET / HTTP/1.0\r\n\r\n", perm("length is not a decimal number")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := dial(t, "tcp", addr)
			cl.send(tt.send)
			cl.closed(tt.want)
		})
	}
	// A well-framed query of exactly 10000 bytes gets an answer (its key
	// is refused as too long for a destination) and the connection stays.
	cl := dial(t, "tcp", addr)
	q := "tlspolicy " + strings.Repeat("a", MaxQuery-len("tlspolicy "))
	if got := cl.query(q); got != "PERM invalid key: 9990 bytes long (a destination is at most 512)" {
		t.Errorf("10000-byte query: got %q", got)
	}
	if got := cl.query("tlspolicy example.com"); got != "OK encrypt protocols=>=TLSv1.2" {
		t.Errorf("after a 10000-byte query, same connection: got %q", got)
	}
	// And the server still answers on a fresh connection.
	if got := dial(t, "tcp", addr).query("tlspolicy example.com"); got != "OK encrypt protocols=>=TLSv1.2" {
		t.Errorf("after malformed requests: got %q", got)
	}
}

func TestSocketmapOneMegabyteQuery(t *testing.T) {
	srv := newTestServer(t, "may")
	_, addr := listen(t, srv, "tcp", protoSocketmap)
	cl := dial(t, "tcp", addr)
	body := "tlspolicy " + strings.Repeat("x", 1<<20)
	writeErr := make(chan error, 1)
	go func() {
		// The server stops reading after the length; the write may fail.
		_, err := io.WriteString(cl.c, netstring(body))
		writeErr <- err
	}()
	cl.closed(netstring("PERM policyd: malformed netstring: longer than the limit"))
	if err := <-writeErr; err != nil && !isConnReset(err) {
		t.Errorf("write: %v", err)
	}
}

func TestSocketmapBinaryGarbageFuzzish(t *testing.T) {
	srv := newTestServer(t, "may")
	_, addr := listen(t, srv, "tcp", protoSocketmap)
	// Netstring-framed garbage is answered, and the connection stays usable.
	cl := dial(t, "tcp", addr)
	for _, q := range []string{"\x00\x01\x02", "tlspolicy \x00\xff", "tlspolicy \xc3\x28", "tlspolicy " + strings.Repeat("\xff", 300)} {
		got := cl.query(q)
		if !strings.HasPrefix(got, "OK ") && !strings.HasPrefix(got, "PERM ") {
			t.Errorf("query %q: got %q", q, got)
		}
	}
	if got := cl.query("tlspolicy example.com"); got != "OK encrypt protocols=>=TLSv1.2" {
		t.Errorf("after garbage: %q", got)
	}
}

func TestSocketmapHalfSentRequestDoesNotBlockOthers(t *testing.T) {
	srv := newTestServer(t, "may")
	srv.IdleTimeout = 300 * time.Millisecond
	_, addr := listen(t, srv, "tcp", protoSocketmap)
	stalled := dial(t, "tcp", addr)
	stalled.send("30:tlspolicy exam") // then silence
	// Other clients are served at once, many times over, while it stalls.
	other := dial(t, "tcp", addr)
	for i := 0; i < 100; i++ {
		if got := other.query("tlspolicy example.com"); got != "OK encrypt protocols=>=TLSv1.2" {
			t.Fatalf("got %q", got)
		}
	}
	// The stalled connection is closed when its read deadline passes.
	start := time.Now()
	stalled.closed("")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stalled connection closed after %v, want about %v", d, srv.IdleTimeout)
	}
}

func TestSocketmapIdleConnections(t *testing.T) {
	const n = 5000
	need := uint64(2*n + 200)
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < need {
		if rl.Max < need {
			t.Skipf("RLIMIT_NOFILE hard limit %d < %d", rl.Max, need)
		}
		old := rl
		rl.Cur = need
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			t.Skipf("cannot raise RLIMIT_NOFILE: %v", err)
		}
		t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	}
	srv := newTestServer(t, "may")
	srv.MaxConns = n + 10
	_, addr := listen(t, srv, "tcp", protoSocketmap)
	idle := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		idle = append(idle, c)
	}
	waitFor(t, func() bool { return srv.open.Load() == n })
	cl := dial(t, "tcp", addr)
	if got := cl.query("tlspolicy example.com"); got != "OK encrypt protocols=>=TLSv1.2" {
		t.Errorf("fresh client among %d idle connections: %q", n, got)
	}
	// An idle connection is still usable too.
	c := &client{t: t, c: idle[n/2], br: bufio.NewReader(idle[n/2])}
	if got := c.query("tlspolicy x.corp.example"); got != "OK verify match=hostname" {
		t.Errorf("idle client: %q", got)
	}
}

func TestMaxConns(t *testing.T) {
	srv := newTestServer(t, "may")
	srv.MaxConns = 5
	_, addr := listen(t, srv, "tcp", protoSocketmap)
	var held []*client
	for i := 0; i < 5; i++ {
		cl := dial(t, "tcp", addr)
		if got := cl.query("tlspolicy example.com"); got != "OK encrypt protocols=>=TLSv1.2" {
			t.Fatalf("conn %d: %q", i, got)
		}
		held = append(held, cl)
	}
	// Beyond the cap, new connections are closed at once.
	for i := 0; i < 3; i++ {
		extra := dial(t, "tcp", addr)
		extra.send(netstring("tlspolicy example.com"))
		extra.closed("")
	}
	if srv.Refused() != 3 {
		t.Errorf("Refused() = %d, want 3", srv.Refused())
	}
	// Established clients keep working.
	for i, cl := range held {
		if got := cl.query("tlspolicy a.corp.example"); got != "OK verify match=hostname" {
			t.Errorf("held conn %d: %q", i, got)
		}
	}
	// Once one leaves, a newcomer gets its place.
	held[0].c.Close()
	waitFor(t, func() bool { return srv.open.Load() == 4 })
	if got := dial(t, "tcp", addr).query("tlspolicy example.com"); got != "OK encrypt protocols=>=TLSv1.2" {
		t.Errorf("newcomer: %q", got)
	}
}

func TestShutdown(t *testing.T) {
	srv := newTestServer(t, "may")
	ln, err := Listen(context.Background(), "tcp", "127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.ServeSocketmap(context.Background(), ln) }()
	addr := ln.Addr().String()
	idle := dial(t, "tcp", addr)
	if got := idle.query("tlspolicy example.com"); got != "OK encrypt protocols=>=TLSv1.2" {
		t.Fatal(got)
	}

	// An in-flight request, driven over a pipe: the server has read the
	// request and is blocked writing the reply, which nobody reads yet.
	ps, pc := net.Pipe()
	pipeDone := make(chan struct{})
	go func() { srv.serveConn(context.Background(), ps, protoSocketmap); close(pipeDone) }()
	written := make(chan struct{})
	go func() { io.WriteString(pc, netstring("tlspolicy x.corp.example")); close(written) }()
	// A pipe is unbuffered: once the write returns, the server has read
	// the request, so it is past its idle state (a new connection starts
	// active, and Shutdown would let it end at its first idle instead).
	select {
	case <-written:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not read the request")
	}
	waitFor(t, func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for c := range srv.conns {
			if c.nc == ps && c.state.Load() == stateActive {
				return true
			}
		}
		return false
	})

	shutdownErr := make(chan error, 2)
	go func() { shutdownErr <- srv.Shutdown(context.Background()) }()
	go func() { shutdownErr <- srv.Shutdown(context.Background()) }() // twice, concurrently

	// The idle connection is closed, the in-flight request completes.
	idle.closed("")
	inflight := &client{t: t, c: pc, br: bufio.NewReader(pc)}
	if got := inflight.reply(); got != "OK verify match=hostname" {
		t.Errorf("in-flight reply: %q", got)
	}
	<-pipeDone // and then that connection ends too
	inflight.closed("")
	for i := 0; i < 2; i++ {
		if err := <-shutdownErr; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}
	if err := <-serveErr; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Errorf("third Shutdown: %v", err)
	}
	// Serving after Shutdown returns at once.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ServeTCPTable(context.Background(), ln2); err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	srv := newTestServer(t, "may")
	// Clock seam: on one fresh connection the server reads the clock once to
	// set the read deadline and once for the lookup; block the second call
	// so that the request stays in flight.
	entered, release := make(chan struct{}), make(chan struct{})
	calls := 0
	srv.Now = func() time.Time {
		if calls++; calls == 2 {
			close(entered)
			<-release
		}
		return time.Now()
	}
	_, addr := listen(t, srv, "tcp", protoSocketmap)
	cl := dial(t, "tcp", addr)
	cl.send(netstring("tlspolicy example.com"))
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown with an expired context = %v, want context.Canceled", err)
	}
	// The stuck connection was closed by force.
	cl.closed("")
	close(release)
}

func TestServeContextCancel(t *testing.T) {
	srv := newTestServer(t, "may")
	ln, err := Listen(context.Background(), "tcp", "127.0.0.1:0", 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeSocketmap(ctx, ln) }()
	cl := dial(t, "tcp", ln.Addr().String())
	if got := cl.query("tlspolicy example.com"); got != "OK encrypt protocols=>=TLSv1.2" {
		t.Fatal(got)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Serve: %v", err)
	}
	cl.closed("")
}

func TestListenUnix(t *testing.T) {
	dir := servetest.ShortTempDir(t)
	path := filepath.Join(dir, "policy.sock")

	// A stale socket (nobody listening) is replaced.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	ln, err := Listen(context.Background(), "unix", path, 0o666)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o666 || fi.Mode().Type() != fs.ModeSocket {
		t.Errorf("socket mode = %v, want socket 0666", fi.Mode())
	}
	// A live socket is not stolen.
	if _, err := Listen(context.Background(), "unix", path, 0); !errors.Is(err, ErrSocketInUse) {
		t.Errorf("over a live socket: %v, want ErrSocketInUse", err)
	}
	ln.Close()

	// The default mode.
	ln, err = Listen(context.Background(), "unix", path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != DefaultSocketMode {
		t.Errorf("default socket mode = %v, %v", fi.Mode(), err)
	}
	ln.Close()

	// A regular file is never removed.
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(context.Background(), "unix", file, 0); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("over a regular file: %v", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("regular file removed: %v", err)
	}
}

// TestHotPathAllocs checks that reading a request and answering it
// allocates nothing, for both protocols.
func TestHotPathAllocs(t *testing.T) {
	srv := newTestServer(t, "may")
	bw := bufio.NewWriterSize(io.Discard, WriteBufSize)
	for _, q := range []string{"tlspolicy example.com", "tlspolicy A.B.Corp.Example", "tlspolicy [mx.example.net]:587", "tlspolicy nowhere.example"} {
		in := strings.NewReader("")
		br := bufio.NewReaderSize(in, ReadBufSize)
		var scratch []byte
		raw := netstring(q)
		allocs := testing.AllocsPerRun(200, func() {
			in.Reset(raw)
			br.Reset(in)
			req, err := ReadNetstring(br, MaxQuery, &scratch)
			if err != nil {
				t.Fatal(err)
			}
			srv.answerSocketmap(bw, req, DefaultMapName)
			bw.Flush()
		})
		if allocs != 0 {
			t.Errorf("socketmap %q: %v allocations per request, want 0", q, allocs)
		}
	}
	for _, q := range []string{"get example.com\n", "get b.corp%2Eexample\n", "get nowhere.example\n"} {
		in := strings.NewReader("")
		br := bufio.NewReaderSize(in, ReadBufSize)
		var scratch []byte
		allocs := testing.AllocsPerRun(200, func() {
			in.Reset(q)
			br.Reset(in)
			line, err := ReadTCPLine(br, maxTCPRequest, &scratch)
			if err != nil {
				t.Fatal(err)
			}
			srv.answerTCPTable(bw, line)
			bw.Flush()
		})
		if allocs != 0 {
			t.Errorf("tcp_table %q: %v allocations per request, want 0", q, allocs)
		}
	}
}

// TestRepliesOwedBeforeTruncatedRequest: complete requests pipelined
// before a truncated one, followed by a half-close, are all answered
// before the server closes the connection (socketmap and tcp_table).
func TestRepliesOwedBeforeTruncatedRequest(t *testing.T) {
	for _, tc := range []struct {
		proto     protocol
		req, tail string
		reply     string
	}{
		{protoSocketmap, netstring("tlspolicy example.com"), "30:tlspolicy exa", netstring("OK encrypt protocols=>=TLSv1.2")},
		{protoTCPTable, "get example.com\n", "get exa", "200 encrypt%20protocols=>=TLSv1.2\n"},
	} {
		t.Run(tc.proto.String(), func(t *testing.T) {
			srv := newTestServer(t, "may")
			_, addr := listen(t, srv, "tcp", tc.proto)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, strings.Repeat(tc.req, 3)+tc.tail); err != nil {
				t.Fatal(err)
			}
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil && !isConnReset(err) {
				t.Fatalf("read: %v (got %q)", err, got)
			}
			if want := strings.Repeat(tc.reply, 3); string(got) != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}
