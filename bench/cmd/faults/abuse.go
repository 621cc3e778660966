package main

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtls/mailtls/bench/internal/harness"
)

const (
	abuseMaxConns = 300
	abuseIdle     = 10 * time.Second
	legitConns    = 8
	legitPace     = time.Millisecond // per connection: 8,000 lookups/s in all
	slowClients   = 100
	floodConns    = 400
)

type abuseResult struct {
	cmd     string
	legit   *client
	slow    string
	flood   []string
	garbage []garbageRow
	exit    string
	alive   bool
	logs    map[string]int
}

type garbageRow struct {
	name     string
	sent     int
	reaction map[string]int
}

func runAbuse(cfg config) *abuseResult {
	logf("abuse: setting up")
	dir := filepath.Join(cfg.dir, "abuse")
	cfg.mkdirFor(dir)
	db := filepath.Join(dir, "db", "mailtls.db")
	tbl := filepath.Join(dir, "known.txt")
	must(os.WriteFile(tbl, []byte(knownTable), 0o644))
	if _, err := cfg.cli(time.Minute, "--db", db, "policy", "import", tbl); err != nil {
		fatalf("abuse: %v", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", harness.MustFreePort())
	tcpAddr := fmt.Sprintf("127.0.0.1:%d", harness.MustFreePort())
	args := []string{"serve", "--db", db, "--socketmap", addr, "--tcp", tcpAddr, "--http", "", "--sources", "override",
		"--max-conns", fmt.Sprint(abuseMaxConns), "--idle-timeout", abuseIdle.String(), "--log-level", "info"}
	p, err := harness.Start(cfg.logs, "abuse-serve", cfg.as(append([]string{cfg.bin}, args...)...)...)
	if err != nil {
		fatalf("%v", err)
	}
	if err := harness.WaitDial(addr, p, 20*time.Second); err != nil {
		fatalf("abuse: %v", err)
	}
	res := &abuseResult{cmd: shellJoin(append([]string{"mailtls"}, args...)...)}
	cl := newClient(addr, knownExpect(), legitPace)
	res.legit = cl
	cl.phase("baseline")
	cl.run(legitConns)
	time.Sleep(5 * time.Second)

	// Slow clients: one byte per second of a valid request.
	cl.phase(fmt.Sprintf("%d slow clients (1 byte/s)", slowClients))
	res.slow = slowLoris(addr, 15*time.Second)

	// Connection flood up to and past the cap.
	cl.phase(fmt.Sprintf("flood of %d idle connections (cap %d)", floodConns, abuseMaxConns))
	res.flood = flood(addr)

	// Oversized and garbage requests.
	cl.phase("oversized and garbage requests")
	res.garbage = garbage(addr, tcpAddr, 10*time.Second)

	cl.phase("after")
	time.Sleep(3 * time.Second)
	cl.halt()
	res.alive = !p.Exited()
	t0 := time.Now()
	if err := p.Stop(15 * time.Second); err != nil {
		res.exit = fmt.Sprintf("SIGTERM: %v", err)
	} else {
		res.exit = fmt.Sprintf("exited 0 %d ms after SIGTERM", time.Since(t0).Milliseconds())
	}
	res.logs, _ = scanLog(p.LogPath)
	logf("abuse: done")
	return res
}

// slowLoris opens slowClients connections that each send a valid request
// one byte per second, for at most d, and reports when the server closed
// them.
func slowLoris(addr string, d time.Duration) string {
	req := "24:tlspolicy slow.example.org,"
	var (
		mu       sync.Mutex
		closedAt []time.Duration
		answered int
		dialErr  int
		wg       sync.WaitGroup
	)
	stop := time.Now().Add(d)
	for i := 0; i < slowClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				mu.Lock()
				dialErr++
				mu.Unlock()
				return
			}
			defer c.Close()
			t0 := time.Now()
			gone := make(chan struct{})
			go func() { // the server closing the connection ends the read
				buf := make([]byte, 256)
				n, _ := c.Read(buf)
				mu.Lock()
				if n > 0 {
					answered++
				} else {
					closedAt = append(closedAt, time.Since(t0))
				}
				mu.Unlock()
				close(gone)
			}()
			for j := 0; j < len(req) && time.Now().Before(stop); j++ {
				if _, err := c.Write([]byte{req[j]}); err != nil {
					break
				}
				select {
				case <-gone:
					return
				case <-time.After(time.Second):
				}
			}
			select {
			case <-gone:
			case <-time.After(time.Until(stop)):
			}
		}()
	}
	wg.Wait()
	sort.Slice(closedAt, func(i, j int) bool { return closedAt[i] < closedAt[j] })
	s := fmt.Sprintf("%d slow connections for %s: %d closed by the server", slowClients, d, len(closedAt))
	if len(closedAt) > 0 {
		s += fmt.Sprintf(" after %.1f–%.1f s", closedAt[0].Seconds(), closedAt[len(closedAt)-1].Seconds())
	}
	s += fmt.Sprintf(", %d still open at the end, %d got a reply, %d could not connect", slowClients-len(closedAt)-answered-dialErr, answered, dialErr)
	return s
}

// flood opens floodConns idle connections and sorts them into held and
// refused ones, checks what a newcomer gets, releases them and times how
// soon a new connection is served again.
func flood(addr string) []string {
	var conns []net.Conn
	dialFail := 0
	for i := 0; i < floodConns; i++ {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			dialFail++
			continue
		}
		conns = append(conns, c)
	}
	time.Sleep(300 * time.Millisecond)
	held, refused := 0, 0
	var wg sync.WaitGroup
	var hn, rn atomic.Int64
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			_, err := c.Read(make([]byte, 1))
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				hn.Add(1)
			} else {
				rn.Add(1)
			}
		}()
	}
	wg.Wait()
	held, refused = int(hn.Load()), int(rn.Load())
	out := []string{fmt.Sprintf("%d connections opened (%d dial failures): %d held open by the server, %d closed at once (over the cap of %d, with %d legitimate connections already open)",
		len(conns), dialFail, held, refused, abuseMaxConns, legitConns)}
	// A newcomer while the cap is reached.
	out = append(out, "a new client while flooded: "+tryQuery(addr))
	time.Sleep(4 * time.Second)
	for _, c := range conns {
		c.Close()
	}
	t0 := time.Now()
	var got string
	for time.Since(t0) < 10*time.Second {
		got = tryQuery(addr)
		if strings.HasPrefix(got, "answered") {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	out = append(out, fmt.Sprintf("after the flood closed: a new client %s, %d ms after the close", got, time.Since(t0).Milliseconds()))
	return out
}

func tryQuery(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "could not connect: " + err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	r, err := harness.SocketmapQuery(c, bufio.NewReader(c), "tlspolicy", "known.example")
	if err != nil {
		if errors.Is(err, io.EOF) {
			return "connection closed by the server (EOF)"
		}
		return "failed: " + err.Error()
	}
	return fmt.Sprintf("answered %q", r)
}

type badInput struct {
	name  string
	tcp   bool
	bytes func() []byte
}

func badInputs() []badInput {
	ns := func(s string) []byte { return []byte(fmt.Sprintf("%d:%s,", len(s), s)) }
	noise := func() []byte {
		b := make([]byte, 4096)
		_, _ = rand.Read(b)
		return b
	}
	return []badInput{
		{"socketmap: 10,001-byte request (cap 10,000)", false, func() []byte { return ns("tlspolicy " + strings.Repeat("a", 9991)) }},
		{"socketmap: length prefix 99999999999999999999", false, func() []byte { return []byte("99999999999999999999:tlspolicy x,") }},
		{"socketmap: no length prefix", false, func() []byte { return []byte("tlspolicy example.com\n") }},
		{"socketmap: wrong terminator", false, func() []byte { return []byte("21:tlspolicy example.com;") }},
		{"socketmap: negative length", false, func() []byte { return []byte("-5:abcde,") }},
		{"socketmap: 4 KiB of random bytes", false, noise},
		{"socketmap: unknown map name", false, func() []byte { return ns("othermap example.com") }},
		{"socketmap: empty key", false, func() []byte { return ns("tlspolicy ") }},
		{"socketmap: NUL and newline in key", false, func() []byte { return ns("tlspolicy a\x00b\nc.example") }},
		{"socketmap: 9,000-byte key", false, func() []byte { return ns("tlspolicy " + strings.Repeat("a.", 4500)) }},
		{"tcp_table: 12,000-byte line (cap 10,000)", true, func() []byte { return []byte("get " + strings.Repeat("a", 12000) + "\n") }},
		{"tcp_table: put request", true, func() []byte { return []byte("put example.com encrypt\n") }},
		{"tcp_table: bad %-encoding", true, func() []byte { return []byte("get %ZZexample.com\n") }},
		{"tcp_table: 4 KiB of random bytes", true, noise},
	}
}

// garbage sends each bad input on fresh connections from 4 workers for d
// and records how the server reacted.
func garbage(addr, tcpAddr string, d time.Duration) []garbageRow {
	inputs := badInputs()
	rows := make([]garbageRow, len(inputs))
	var mu sync.Mutex
	for i, in := range inputs {
		rows[i] = garbageRow{name: in.name, reaction: map[string]int{}}
	}
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; time.Now().Before(stop); i++ {
				k := i % len(inputs)
				in := inputs[k]
				a := addr
				if in.tcp {
					a = tcpAddr
				}
				r := sendBad(a, in.bytes())
				mu.Lock()
				rows[k].sent++
				rows[k].reaction[r]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return rows
}

func sendBad(addr string, b []byte) string {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "could not connect"
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(b); err != nil {
		return "closed while sending"
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	reply, err := io.ReadAll(io.LimitReader(c, 4096))
	var ne net.Error
	switch {
	case len(reply) > 0:
		s := string(reply)
		if i := strings.IndexAny(s, " \n"); i > 0 {
			s = s[:i]
		}
		if len(s) > 24 {
			s = s[:24]
		}
		return fmt.Sprintf("reply `%s…`, then closed", strings.TrimSpace(s))
	case errors.As(err, &ne) && ne.Timeout():
		return "no reply within 2 s"
	default:
		return "closed without reply"
	}
}
