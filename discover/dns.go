package discover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/dnsname"
)

// Sentinel errors of the DNS client.
var (
	ErrNoResolver = errors.New("discover: no DNS resolver")
	ErrDNS        = errors.New("discover: DNS lookup failed")
)

// DefaultResolvConf is where the system resolver is configured.
const DefaultResolvConf = "/etc/resolv.conf"

// Resolver sends queries to recursive resolvers with the DO and AD bits
// set, so that a validating resolver reports DNSSEC status in the AD bit of
// its answer (RFC 6840 §5.7). The AD bit is only as trustworthy as the path
// to the resolver: use a validating resolver on localhost.
type Resolver struct {
	// Servers are "host:port" addresses, tried in order.
	Servers []string
	// Timeout bounds one query attempt; 0 means 5 s.
	Timeout time.Duration
	// Note says how the servers were chosen when that was not obvious
	// (a fallback).
	Note string
}

// FallbackResolver is used when the system configuration names no
// resolver, as the C library does without /etc/resolv.conf.
const FallbackResolver = "127.0.0.1:53"

// NewResolver returns a resolver for addr ("host:port", or a bare host for
// port 53). An empty addr means the system resolver from resolvConf
// (DefaultResolvConf when empty); when that file is missing, unreadable or
// names no nameserver, the resolver falls back to FallbackResolver and
// says why in Note.
func NewResolver(addr, resolvConf string) (*Resolver, error) {
	if addr != "" {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			if net.ParseIP(addr) == nil && !dnsname.Valid(strings.ToLower(addr)) {
				return nil, fmt.Errorf("%w: invalid resolver address %q (want host:port, e.g. 127.0.0.1:53)", ErrNoResolver, addr)
			}
			addr = net.JoinHostPort(addr, "53")
		}
		return &Resolver{Servers: []string{addr}}, nil
	}
	if resolvConf == "" {
		resolvConf = DefaultResolvConf
	}
	cc, err := dns.ClientConfigFromFile(resolvConf)
	if err == nil && len(cc.Servers) == 0 {
		err = errors.New("no nameserver line")
	}
	if err != nil {
		return &Resolver{Servers: []string{FallbackResolver},
			Note: fmt.Sprintf("no --resolver given and %s is unusable (%v): using %s", resolvConf, err, FallbackResolver)}, nil
	}
	r := &Resolver{}
	for _, s := range cc.Servers {
		r.Servers = append(r.Servers, net.JoinHostPort(s, cc.Port))
	}
	if cc.Timeout > 0 {
		r.Timeout = time.Duration(cc.Timeout) * time.Second
	}
	return r, nil
}

// Answer is the outcome of one query.
type Answer struct {
	// Records are the answer records of the queried type (CNAMEs and
	// signatures left out).
	Records []dns.RR
	// AD is the Authenticated Data bit of the response: the resolver
	// validated the answer with DNSSEC.
	AD bool
	// NXDomain is set when the name does not exist.
	NXDomain bool
	// TTL is how long the answer may be cached: the least TTL of its
	// records, or for NXDOMAIN and NODATA the negative TTL of the SOA in
	// the authority section (RFC 2308 §5). Zero when the answer gives none.
	TTL uint32
}

// ednsSize is the EDNS0 UDP payload size (DNS flag day 2020).
const ednsSize = 1232

// Lookup queries name for qtype. NXDOMAIN and NODATA are answers, not
// errors; SERVFAIL, REFUSED, timeouts and network errors are errors
// wrapping ErrDNS, after every server has been tried. A truncated UDP
// answer is retried over TCP.
func (r *Resolver) Lookup(ctx context.Context, name string, qtype uint16) (Answer, error) {
	if len(r.Servers) == 0 {
		return Answer{}, ErrNoResolver
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = true
	m.SetEdns0(ednsSize, true)

	servers := r.Servers
	if len(servers) == 1 {
		servers = []string{servers[0], servers[0]} // one retry
	}
	what := name + " " + typeName(qtype)
	var lastErr error
	for _, srv := range servers {
		if err := ctx.Err(); err != nil {
			break
		}
		resp, err := exchange(ctx, m, srv, timeout)
		if err != nil {
			lastErr = fmt.Errorf("%w: %s: %v", ErrDNS, what, describeNetErr(err, srv, timeout))
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
		default:
			lastErr = fmt.Errorf("%w: %s: %s from %s", ErrDNS, what, dns.RcodeToString[resp.Rcode], srv)
			continue
		}
		a := Answer{AD: resp.AuthenticatedData, NXDomain: resp.Rcode == dns.RcodeNameError}
		for _, rr := range resp.Answer {
			if rr.Header().Rrtype == qtype {
				a.Records = append(a.Records, rr)
			}
		}
		a.TTL = answerTTL(resp, a.Records)
		return a, nil
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("%w: %s: %v", ErrDNS, what, ctx.Err())
	}
	return Answer{}, lastErr
}

// answerTTL is the caching time of an answer: the least TTL of records,
// or, when there are none, min(SOA TTL, SOA MINIMUM) of the authority
// section (RFC 2308 §5).
func answerTTL(resp *dns.Msg, records []dns.RR) uint32 {
	var ttl uint32
	first := true
	take := func(t uint32) {
		if first || t < ttl {
			ttl, first = t, false
		}
	}
	if len(records) > 0 {
		for _, rr := range records {
			take(rr.Header().Ttl)
		}
		return ttl
	}
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			take(min(soa.Hdr.Ttl, soa.Minttl))
		}
	}
	return ttl
}

// exchange sends m over UDP and, if the answer is truncated, over TCP.
func exchange(ctx context.Context, m *dns.Msg, srv string, timeout time.Duration) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &dns.Client{Net: "udp", UDPSize: ednsSize, Timeout: timeout}
	resp, _, err := c.ExchangeContext(ctx, m, srv)
	if err == nil && !resp.Truncated {
		return resp, nil
	}
	// A truncated answer may also fail to unpack; it still says TC.
	if resp == nil || !resp.Truncated {
		return nil, err
	}
	c = &dns.Client{Net: "tcp", Timeout: timeout}
	resp, _, err = c.ExchangeContext(ctx, m, srv)
	return resp, err
}

// describeNetErr turns timeouts into a message that names the limit.
func describeNetErr(err error, srv string, timeout time.Duration) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return "no answer from " + srv + " within " + timeout.String()
	}
	return err.Error()
}

// typeName is dns.TypeToString with a fallback.
func typeName(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return "TYPE" + strconv.Itoa(int(t))
}
