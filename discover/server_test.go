package discover

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/internal/testnet"
)

// testNow is the clock of every test: certificates are judged against it,
// not against the real time.
var testNow = testnet.Now

// --- DNS -------------------------------------------------------------------

// testZone is an in-memory authoritative-and-recursive stand-in. Names
// under a signed suffix get the AD bit when the query asks for DNSSEC (DO
// or AD set), as a validating resolver would.
type testZone struct {
	mu       sync.Mutex
	rrs      map[dnsKey][]dns.RR
	names    map[string]bool // every owner name, for NXDOMAIN vs NODATA
	signed   []string        // suffixes, with trailing dot
	truncate map[string]bool // answer over UDP with TC set and no records
	servfail map[string]bool
	queries  map[string]int // "name type net" -> count
}

type dnsKey struct {
	name  string
	qtype uint16
}

func newTestZone() *testZone {
	return &testZone{rrs: map[dnsKey][]dns.RR{}, names: map[string]bool{}, truncate: map[string]bool{},
		servfail: map[string]bool{}, queries: map[string]int{}}
}

// add parses zone-file lines such as "mx.example. 300 IN A 127.0.0.1".
func (z *testZone) add(t *testing.T, lines ...string) {
	t.Helper()
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("bad test RR %q: %v", l, err)
		}
		h := rr.Header()
		h.Name = strings.ToLower(h.Name)
		k := dnsKey{h.Name, h.Rrtype}
		z.rrs[k] = append(z.rrs[k], rr)
		z.names[h.Name] = true
	}
}

func (z *testZone) sign(suffix string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.signed = append(z.signed, dns.Fqdn(suffix))
}

func (z *testZone) count(name string, qtype uint16, network string) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.queries[fmt.Sprintf("%s %s %s", dns.Fqdn(name), dns.TypeToString[qtype], network)]
}

func (z *testZone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	network := w.RemoteAddr().Network()
	z.mu.Lock()
	z.queries[fmt.Sprintf("%s %s %s", name, dns.TypeToString[q.Qtype], network)]++
	rrs := z.rrs[dnsKey{name, q.Qtype}]
	exists := z.names[name]
	signed := false
	for _, s := range z.signed {
		signed = signed || name == s || strings.HasSuffix(name, "."+s)
	}
	trunc, fail := z.truncate[name], z.servfail[name]
	z.mu.Unlock()

	do := false
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
		m.SetEdns0(opt.UDPSize(), do)
	}
	switch {
	case fail:
		m.Rcode = dns.RcodeServerFailure
	case trunc && network == "udp":
		m.Truncated = true
	default:
		m.Answer = rrs
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		m.AuthenticatedData = signed && (do || req.AuthenticatedData)
	}
	w.WriteMsg(m)
}

// startDNS serves z on UDP and TCP at the same 127.0.0.1 port, as
// coredns's dnstest does, and returns "127.0.0.1:port".
func startDNS(t *testing.T, z *testZone) string {
	t.Helper()
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("no free port for UDP+TCP: %v", err)
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: z}, {Listener: ln, Handler: z}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe() //nolint:errcheck // ends at Shutdown
		<-started
		t.Cleanup(func() { s.Shutdown() })
	}
	return pc.LocalAddr().String()
}

// --- certificates -----------------------------------------------------------

// The test CA and certificates are internal/testnet's; these names keep
// the tests of this package short.
type testCA struct {
	*testnet.CA
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	ca := testnet.NewCA(t)
	return &testCA{ca, ca.Pool}
}

// leaf issues a server certificate for names, valid from notBefore to
// notAfter. A nil ca makes it self-signed.
func leaf(t *testing.T, ca *testCA, notBefore, notAfter time.Time, names ...string) tls.Certificate {
	t.Helper()
	var c *testnet.CA
	if ca != nil {
		c = ca.CA
	}
	return testnet.Leaf(t, c, notBefore, notAfter, names...)
}

// tlsa311 is the "3 1 1" TLSA data (DANE-EE, SPKI, SHA-256) of c.
func tlsa311(c tls.Certificate) string { return testnet.TLSA311(c) }

// --- SMTP -------------------------------------------------------------------

type smtpBehavior int

const (
	smtpNormal          smtpBehavior = iota
	smtpCloseAfterGreet              // sends the greeting, then hangs up
	smtpBlackHole                    // accepts, never writes
)

// smtpServer is a minimal receiving SMTP server: greeting, EHLO, STARTTLS
// when it has a certificate, QUIT. It remembers whether a client ever sent
// MAIL, which a probe must not do.
type smtpServer struct {
	ln       net.Listener
	cert     *tls.Certificate
	behavior smtpBehavior
	mailSeen atomic.Bool
	wg       sync.WaitGroup
}

func startSMTP(t *testing.T, behavior smtpBehavior, cert *tls.Certificate) *smtpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{ln: ln, cert: cert, behavior: behavior}
	var mu sync.Mutex
	var conns []net.Conn
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			s.wg.Go(func() { s.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		s.wg.Wait()
		if s.mailSeen.Load() {
			t.Errorf("a probe sent MAIL FROM to %s", ln.Addr())
		}
	})
	return s
}

func (s *smtpServer) addr() string { return s.ln.Addr().String() }

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second)) // a safety net only
	switch s.behavior {
	case smtpBlackHole:
		io.Copy(io.Discard, c) //nolint:errcheck // until the client gives up
		return
	case smtpCloseAfterGreet:
		io.WriteString(c, "220 mx ESMTP closing soon\r\n")
		return
	}
	io.WriteString(c, "220-mx.test ESMTP\r\n220 welcome\r\n")
	var conn net.Conn = c
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO "):
			ext := "250-SIZE 10240000\r\n"
			if s.cert != nil {
				ext += "250-STARTTLS\r\n"
			}
			io.WriteString(conn, "250-mx.test hello\r\n250-PIPELINING\r\n"+ext+"250 8BITMIME\r\n")
		case cmd == "STARTTLS" && s.cert != nil:
			io.WriteString(conn, "220 2.0.0 ready\r\n")
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{*s.cert}})
			if tc.Handshake() != nil {
				return
			}
			conn = tc
			br = bufio.NewReader(conn)
		case strings.HasPrefix(cmd, "MAIL"):
			s.mailSeen.Store(true)
			io.WriteString(conn, "250 ok\r\n")
		case cmd == "QUIT":
			io.WriteString(conn, "221 bye\r\n")
			return
		default:
			io.WriteString(conn, "502 5.5.2 unknown\r\n")
		}
	}
}

// router is the DialSMTP seam: every MX resolves to 127.0.0.1, so the MX
// name picks the server.
type router struct {
	t      *testing.T
	port   string
	mu     sync.Mutex
	routes map[string]string
}

func (r *router) route(mx string, s *smtpServer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routes[mx] = s.addr()
}

func (r *router) dial(ctx context.Context, mx, addr string) (net.Conn, error) {
	if want := net.JoinHostPort("127.0.0.1", r.port); addr != want {
		r.t.Errorf("dial %s at %s, want the resolved address %s", mx, addr, want)
	}
	r.mu.Lock()
	a, ok := r.routes[mx]
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("connect: connection refused (no test server for %s)", mx)
	}
	return (&net.Dialer{}).DialContext(ctx, "tcp", a)
}
