package testnet

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Zone is an in-memory stand-in for a recursive resolver that tests edit
// while it serves. Names under a signed suffix get the AD bit when the
// query asks for DNSSEC (DO or AD set), as a validating resolver would.
// NXDOMAIN and NODATA answers carry an SOA when one covers the name, so
// negative caching (RFC 2308) can be tested.
type Zone struct {
	mu       sync.Mutex
	rrs      map[key][]dns.RR
	names    map[string]bool // every owner name, for NXDOMAIN vs NODATA
	signed   []string        // suffixes, with trailing dot
	soas     map[string]*dns.SOA
	servfail map[string]bool
	drop     map[string]bool // never answered
	queries  map[string]int  // "name TYPE" -> count
}

type key struct {
	name  string
	qtype uint16
}

// NewZone returns an empty zone.
func NewZone() *Zone {
	return &Zone{rrs: map[key][]dns.RR{}, names: map[string]bool{}, soas: map[string]*dns.SOA{},
		servfail: map[string]bool{}, drop: map[string]bool{}, queries: map[string]int{}}
}

// Add parses zone-file lines such as "mx.example. 300 IN A 127.0.0.1".
// An SOA line makes its owner the apex whose negative TTL covers names
// below it.
func (z *Zone) Add(t testing.TB, lines ...string) {
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
		if soa, ok := rr.(*dns.SOA); ok {
			z.soas[h.Name] = soa
			continue
		}
		k := key{h.Name, h.Rrtype}
		z.rrs[k] = append(z.rrs[k], rr)
		z.names[h.Name] = true
	}
}

// Remove deletes the records of name and type; the name stays (NODATA).
func (z *Zone) Remove(name string, qtype uint16) {
	z.mu.Lock()
	defer z.mu.Unlock()
	delete(z.rrs, key{dns.Fqdn(strings.ToLower(name)), qtype})
}

// Sign makes names under suffix DNSSEC-validated.
func (z *Zone) Sign(suffix string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.signed = append(z.signed, dns.Fqdn(suffix))
}

// ServFail makes queries for name fail with SERVFAIL (or stop, with false).
func (z *Zone) ServFail(name string, on bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.servfail[dns.Fqdn(strings.ToLower(name))] = on
}

// Drop makes queries for name go unanswered (or answered again, with false).
func (z *Zone) Drop(name string, on bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.drop[dns.Fqdn(strings.ToLower(name))] = on
}

// Count is how many queries for name and type arrived.
func (z *Zone) Count(name string, qtype uint16) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.queries[fmt.Sprintf("%s %s", dns.Fqdn(strings.ToLower(name)), dns.TypeToString[qtype])]
}

// ServeDNS answers from the zone.
func (z *Zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m) //nolint:errcheck // test server
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	z.mu.Lock()
	z.queries[fmt.Sprintf("%s %s", name, dns.TypeToString[q.Qtype])]++
	rrs := z.rrs[key{name, q.Qtype}]
	exists := z.names[name]
	signed := false
	for _, s := range z.signed {
		signed = signed || name == s || strings.HasSuffix(name, "."+s)
	}
	var soa *dns.SOA
	for apex, s := range z.soas {
		if name == apex || strings.HasSuffix(name, "."+apex) {
			soa = s
		}
	}
	fail, drop := z.servfail[name], z.drop[name]
	z.mu.Unlock()
	if drop {
		return
	}
	do := false
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
		m.SetEdns0(opt.UDPSize(), do)
	}
	switch {
	case fail:
		m.Rcode = dns.RcodeServerFailure
	default:
		m.Answer = rrs
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		if len(rrs) == 0 && soa != nil {
			m.Ns = []dns.RR{soa}
		}
		m.AuthenticatedData = signed && (do || req.AuthenticatedData)
	}
	w.WriteMsg(m) //nolint:errcheck // test server
}

// StartDNS serves z on UDP and TCP at the same 127.0.0.1 port, as
// coredns's dnstest does, and returns "127.0.0.1:port".
func StartDNS(t testing.TB, z *Zone) string {
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
	serve(t, z, pc, ln)
	return pc.LocalAddr().String()
}

// StartDNSAt serves z on UDP and TCP at addr (host:port on loopback),
// for clients that cannot be told a port: glibc's resolver, configured by
// a nameserver line of resolv.conf, always asks port 53.
func StartDNSAt(t testing.TB, z *Zone, addr string) error {
	t.Helper()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("testnet: DNS address %q: want host:port: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("testnet: DNS address %q: want a loopback address", addr)
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("testnet: DNS on %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return fmt.Errorf("testnet: DNS on %s: %w", addr, err)
	}
	serve(t, z, pc, ln)
	return nil
}

func serve(t testing.TB, z *Zone, pc net.PacketConn, ln net.Listener) {
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: z}, {Listener: ln, Handler: z}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe() //nolint:errcheck // ends at Shutdown
		<-started
		t.Cleanup(func() { s.Shutdown() }) //nolint:errcheck // test server
	}
}
