package policyd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults for the Server fields left zero.
const (
	DefaultMapName     = "tlspolicy"
	DefaultMaxConns    = 1000
	DefaultIdleTimeout = 60 * time.Second // Postfix drops idle connections after 10 s
	DefaultSocketMode  = 0o660
)

// shutdownGrace bounds the graceful shutdown that cancelling a Serve
// context starts.
const shutdownGrace = 5 * time.Second

// Per-connection buffer sizes. Postfix sends one short query at a time and
// replies are a policy line, so small buffers keep idle connections cheap;
// longer queries (up to 10,000 bytes) go through a scratch buffer.
const (
	ReadBufSize  = 4096
	WriteBufSize = 1024
)

// ErrSocketInUse is returned by Listen when a live server already listens
// on a UNIX-domain socket path.
var ErrSocketInUse = errors.New("policyd: socket in use")

// Server answers Postfix TLS policy lookups from Table, over socketmap or
// tcp_table. The zero values of the optional fields select the defaults.
// One Server may serve several listeners; Shutdown stops them all.
// Until Table holds a snapshot, every lookup gets a temporary error (TEMP,
// or 400 for tcp_table), so Postfix defers mail rather than sending it
// without the operator's overrides: load the table before serving.
type Server struct {
	Table       *Table
	MapName     string           // socketmap map name; DefaultMapName if empty
	MaxConns    int              // open connections, all listeners together; DefaultMaxConns if 0
	IdleTimeout time.Duration    // read deadline for each request; DefaultIdleTimeout if 0
	Logger      *slog.Logger     // nil: discard
	Now         func() time.Time // clock for deadlines and expiry; time.Now if nil
	Observer    Observer         // told about every reply (metrics); nil: none
	TLSRPT      bool             // TLSRPT attributes on every published answer, not only for MapName+TLSRPTSuffix

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*srvConn]struct{}
	closing   atomic.Bool
	stopping  chan struct{} // closed when Shutdown starts
	done      chan struct{} // closed when every connection and Serve loop has ended after Shutdown
	waitOnce  sync.Once
	wg        sync.WaitGroup // Serve loops and connections they started
	open      atomic.Int64   // open connections
	refused   atomic.Int64
	lastWarn  atomic.Int64 // Unix nanoseconds of the last "refusing connections" warning
}

// protocol is the package's name for Proto.
type protocol = Proto

const (
	protoSocketmap = ProtoSocketmap
	protoTCPTable  = ProtoTCPTable
)

// Connection states, for Shutdown: idle connections are closed at once,
// active ones finish their request first.
const (
	stateActive int32 = iota
	stateIdle
)

type srvConn struct {
	nc    net.Conn
	state atomic.Int32
}

// initLocked allocates the Server's internal state; s.mu must be held.
func (s *Server) initLocked() {
	if s.stopping == nil {
		s.listeners = make(map[net.Listener]struct{})
		s.conns = make(map[*srvConn]struct{})
		s.stopping = make(chan struct{})
		s.done = make(chan struct{})
	}
}

func (s *Server) log() *slog.Logger {
	if s.Logger == nil {
		return discardLogger
	}
	return s.Logger
}

var discardLogger = slog.New(slog.DiscardHandler)

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) mapName() string {
	if s.MapName == "" {
		return DefaultMapName
	}
	return s.MapName
}

func (s *Server) maxConns() int64 {
	if s.MaxConns <= 0 {
		return DefaultMaxConns
	}
	return int64(s.MaxConns)
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout <= 0 {
		return DefaultIdleTimeout
	}
	return s.IdleTimeout
}

// ServeSocketmap answers socketmap_table(5) queries on ln until Shutdown is
// called or ctx is done (which starts a Shutdown with a 5 s grace period).
// It returns nil then, or the error that made Accept fail for good.
func (s *Server) ServeSocketmap(ctx context.Context, ln net.Listener) error {
	return s.serve(ctx, ln, protoSocketmap)
}

// ServeTCPTable answers tcp_table(5) queries on ln, like ServeSocketmap.
func (s *Server) ServeTCPTable(ctx context.Context, ln net.Listener) error {
	return s.serve(ctx, ln, protoTCPTable)
}

func (s *Server) serve(ctx context.Context, ln net.Listener, proto protocol) error {
	s.mu.Lock()
	s.initLocked()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		s.Shutdown(sctx)
	})
	defer stop()

	log := s.log().With("proto", proto.String(), "addr", ln.Addr().String())
	log.Debug("policy server listening")
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return nil
			}
			if !isTemporary(err) {
				ln.Close()
				return fmt.Errorf("policyd: accept on %s: %w", ln.Addr(), err)
			}
			// Out of descriptors and the like: back off as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.Warn("accept failed; retrying", "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.stopping:
				t.Stop()
				return nil
			}
			continue
		}
		backoff = 0
		if n := s.open.Add(1); n > s.maxConns() {
			s.open.Add(-1)
			s.noteRefused(log) // before Close: whoever sees the close sees the count
			nc.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.open.Add(-1)
			s.serveConn(ctx, nc, proto)
		}()
	}
}

func isTemporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.ECONNRESET} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// noteRefused counts a connection refused for MaxConns and warns at most
// every 10 seconds.
func (s *Server) noteRefused(log *slog.Logger) {
	n := s.refused.Add(1)
	now := time.Now().UnixNano()
	last := s.lastWarn.Load()
	if now-last >= int64(10*time.Second) && s.lastWarn.CompareAndSwap(last, now) {
		log.Warn("connection limit reached; refusing new connections",
			"max_conns", s.maxConns(), "refused_total", n)
	}
}

// Refused returns how many connections were closed because MaxConns was
// reached.
func (s *Server) Refused() int64 { return s.refused.Load() }

// serveConn runs one connection until the peer closes it, it idles out,
// it sends something malformed, or the server shuts down.
func (s *Server) serveConn(ctx context.Context, nc net.Conn, proto protocol) {
	c := &srvConn{nc: nc}
	defer nc.Close()
	s.mu.Lock()
	s.initLocked()
	if s.closing.Load() {
		s.mu.Unlock()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	switch proto {
	case protoTCPTable:
		s.tcpTableConn(ctx, c)
	default:
		s.socketmapConn(ctx, c)
	}
}

// goIdle marks c idle before it blocks for the next request. It reports
// false if the server is shutting down and c should end. Together with
// Shutdown's order (set closing, then close idle connections), this makes
// sure no idle connection is left open.
func (s *Server) goIdle(c *srvConn) bool {
	if s.closing.Load() {
		return false
	}
	c.state.Store(stateIdle)
	return !s.closing.Load()
}

// Shutdown stops accepting connections, closes idle ones, lets requests in
// progress finish and waits for every connection to end. If ctx ends first
// it closes the remaining connections and returns ctx.Err(). It is safe to
// call more than once and from several goroutines.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.initLocked()
	if !s.closing.Swap(true) {
		close(s.stopping)
		s.log().Info("policy server shutting down", "open_conns", s.open.Load())
	}
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		if c.state.Load() == stateIdle {
			c.nc.Close()
		}
	}
	s.mu.Unlock()
	s.waitOnce.Do(func() {
		go func() {
			s.wg.Wait()
			close(s.done)
		}()
	})
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

// IsLoopbackHost reports whether host (of a HOST:PORT listen address) is
// "localhost" or a loopback IP address: the listeners that need no remote
// access, which is all Postfix needs.
func IsLoopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// Listen opens a listener for ServeSocketmap or ServeTCPTable. network is
// "tcp", "tcp4", "tcp6" or "unix".
//
// For "unix", a stale socket file left by a crashed daemon is removed first
// (only if nothing answers on it, and only if it is a socket), and the new
// socket gets the given mode (DefaultSocketMode if 0). Postfix's smtp(8)
// connects as the postfix user, so the socket must be writable by it: give
// the socket a group postfix is in and mode 0660, or mode 0666 in a
// directory only trusted users can reach. With a chrooted smtp(8) (the
// default on Debian) the socket must also live under the Postfix queue
// directory, e.g. /var/spool/postfix/private/mailtls.
func Listen(ctx context.Context, network, addr string, mode fs.FileMode) (net.Listener, error) {
	var lc net.ListenConfig
	if network != "unix" {
		ln, err := lc.Listen(ctx, network, addr)
		if err != nil {
			return nil, fmt.Errorf("policyd: listen: %w", err)
		}
		return ln, nil
	}
	if mode == 0 {
		mode = DefaultSocketMode
	}
	if fi, err := os.Lstat(addr); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("policyd: listen: %s exists and is not a socket", addr)
		}
		d := net.Dialer{Timeout: time.Second}
		if c, err := d.DialContext(ctx, "unix", addr); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: %s", ErrSocketInUse, addr)
		}
		if err := os.Remove(addr); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("policyd: removing stale socket: %w", err)
		}
	}
	ln, err := lc.Listen(ctx, "unix", addr)
	if err != nil {
		return nil, fmt.Errorf("policyd: listen: %w", err)
	}
	if err := os.Chmod(addr, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("policyd: listen: %w", err)
	}
	return ln, nil
}

// awaitRequest runs before each request of a persistent connection. When
// the client has nothing more buffered (or the server is closing), it is
// about to block: it sends the pending replies (pipelined requests are
// answered in one write), lets goIdle end the connection when shutting
// down (after the reply in flight was sent), and arms one deadline for
// reading the next request and writing its reply. It reports false when
// the connection must end.
func (s *Server) awaitRequest(ctx context.Context, c *srvConn, br *bufio.Reader, bw *bufio.Writer, idle time.Duration, log *slog.Logger, proto string) bool {
	if br.Buffered() > 0 && !s.closing.Load() {
		return true
	}
	if bw.Buffered() > 0 {
		if err := bw.Flush(); err != nil {
			log.DebugContext(ctx, proto+" write failed", "remote", c.nc.RemoteAddr().String(), "err", err)
			return false
		}
	}
	if !s.goIdle(c) {
		return false
	}
	c.nc.SetDeadline(s.now().Add(idle))
	return true
}
