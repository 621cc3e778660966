package main

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailtls/mailtls/bench/internal/harness"
	"github.com/mailtls/mailtls/bench/internal/tcpfwd"
	"github.com/mailtls/mailtls/internal/pgtest"
)

// The netcut phase, case G5: mailtls reaches its PostgreSQL server over
// TCP through a forwarder (bench/internal/tcpfwd) that the suite cuts for
// netcutOutage and then restores. The cut is a black hole: no refusal,
// no reset, the connections just stop carrying anything (a lost route),
// so mailtls finds out only when the forwarder closes them at the
// restore. Unlike G2 the server never stops. It is a phase of its own
// (FAULTS_PHASES=netcut runs it alone, in about a minute).

// netcutOutage is how long the network stays cut in case G5.
const netcutOutage = 20 * time.Second

type netcutResult struct {
	cmd                 string
	windows             []*window
	expected, lost, dup int
	closed              int           // connections the restore closed
	catchUp             time.Duration // from the restore to the follower caught up
	exit                string
}

// forwardedDSN is dsn (a pgtest cluster's, on a unix socket) spelled to
// reach the server at addr over TCP, and the socket's path.
func forwardedDSN(dsn, addr string) (string, string) {
	u, err := url.Parse(dsn)
	if err != nil {
		fatalf("netcut: %v", err)
	}
	q := u.Query()
	sock := filepath.Join(q.Get("host"), ".s.PGSQL."+q.Get("port"))
	q.Del("host")
	q.Del("port")
	// A connection is made within 5 s or given up: a black hole never
	// answers the connect, and the follower must then try again.
	q.Set("connect_timeout", "5")
	u.Host, u.RawQuery = addr, q.Encode()
	return u.String(), sock
}

func runNetcut(cfg config) *netcutResult {
	res := &netcutResult{}
	dir := filepath.Join(cfg.dir, "netcut")
	cfg.mkdirFor(dir)
	pg, err := pgtest.StartCluster()
	if err != nil {
		fatalf("netcut: %v", err)
	}
	defer func() {
		if err := pg.Close(); err != nil {
			logf("netcut: %v", err)
		}
	}()
	_, sock := forwardedDSN(pg.DSN(), "")
	fwd, err := tcpfwd.Listen("127.0.0.1:0", func() (net.Conn, error) { return net.Dial("unix", sock) })
	if err != nil {
		fatalf("netcut: %v", err)
	}
	defer fwd.Close()
	dsn, _ := forwardedDSN(pg.DSN(), fwd.Addr())
	logf("netcut: PostgreSQL on %s, through %s", pg.SocketDir(), fwd.Addr())
	h := startFleetHost(cfg, "netcut", dir, "fn", dsn, int(40_000*cfg.scale), 73)
	res.cmd = h.cmd
	writer := h.write(40, nil) // about 36 s

	time.Sleep(5 * time.Second) // the baseline window
	h.client.phase(fmt.Sprintf("G5. network to PostgreSQL cut for %s", netcutOutage))
	fwd.Cut()
	time.Sleep(netcutOutage) // the cut itself
	res.closed = fwd.Restore()
	back := time.Now()
	h.client.phase("after")
	<-writer

	res.expected, res.lost, res.dup, res.catchUp = h.settle(cfg, back)
	res.windows = h.client.all
	res.exit = h.stop()
	logf("netcut: %d lost, %d duplicated of %d; %d connections cut", res.lost, res.dup, res.expected, res.closed)
	return res
}

func (s *suite) netcutSummary(t *harness.Table, verdict func(bool, ...string) string) {
	n := s.netcut
	var errs, wrong, ok int64
	for _, w := range n.windows {
		ok += w.ok.Load()
		errs += w.errs.Load()
		wrong += w.wrong.Load()
	}
	t.Add(fmt.Sprintf("G5. daemon with the network to PostgreSQL cut %s: errors / wrong answers", netcutOutage), "0 / 0",
		fmt.Sprintf("%s / %s of %s lookups", harness.Int(errs), harness.Int(wrong), harness.Int(ok+errs)),
		verdict(errs == 0 && wrong == 0 && ok > 0, fmt.Sprintf("netcut: %d lookup errors, %d wrong answers", errs, wrong)))
	t.Add("G5. follower across the cut: lost / duplicated", "0 / 0", fmt.Sprintf("%d / %d of %s", n.lost, n.dup, harness.Int(int64(n.expected))),
		verdict(n.lost == 0 && n.dup == 0 && n.expected > 0, fmt.Sprintf("netcut: follower %d lost, %d duplicated", n.lost, n.dup)))
	t.Add("netcut: run survives and stops cleanly", "exit 0", n.exit, verdict(strings.HasPrefix(n.exit, "exited 0"), "netcut: "+n.exit))
}

func (s *suite) netcutSection(b *strings.Builder) {
	n := s.netcut
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 6. Fleet: the network to PostgreSQL cut\n\n")
	w("The cluster of section 5's kind, reached over TCP through a loopback forwarder (bench/internal/tcpfwd) that\n")
	w("the suite cuts for %s: a black hole, the connections stay open and carry nothing, new ones are accepted\n", netcutOutage)
	w("and hear nothing; at the restore the forwarder closes the %d connections that lived through the cut. The server\n", n.closed)
	w("never stops. Command: `%s`, with the same lookups and checks as section 5, while a writer appends\n", n.cmd)
	w("a generated log of %s lines in 40 chunks over about 36 s; the stored deliveries are compared with one\n", harness.Int(int64(40_000*s.cfg.scale)))
	w("`import --host fn` of the same log into SQLite.\n\n")
	t := harness.Table{Head: []string{"window", "s", "answered", "errors", "wrong", "p50 µs", "p99 µs", "max µs"}}
	for _, win := range n.windows {
		winRow(&t, []string{win.name}, win)
	}
	b.WriteString(t.String())
	w("\nFollower: %d lost, %d duplicated of %s; caught up %.1f s after the restore.\n", n.lost, n.dup, harness.Int(int64(n.expected)), n.catchUp.Seconds())
	w("Run: %s.\n", n.exit)
	for _, win := range n.windows {
		if len(win.samples) > 0 {
			w("\nFirst errors or wrong answers in %s:\n\n", win.name)
			for _, sm := range win.samples {
				w("- `%s`\n", sm)
			}
		}
	}
	w("\n")
}
