package logparse

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/dnsname"
)

// InternalRelays decides which deliveries are hops inside the host rather
// than outbound mail: a content filter (amavis, spamassassin) reached over
// smtp or lmtp on the loopback address, a local LMTP server (dovecot) on a
// unix socket, or a relay the operator lists (internal-relays). The zero
// value and nil know only the built-in rules.
//
// Postfix logs the relay of a delivery (smtp(8), lmtp(8) "relay=") as
//
//	host[addr]:port    e.g. 127.0.0.1[127.0.0.1]:10024, localhost[::1]:10025
//	host[path]         lmtp over a unix socket: mail.example.com[private/dovecot-lmtp]
//	                   or mail.example.com[/var/run/dovecot/lmtp] (host is $myhostname)
//	none               no connection was made
//
// and, in some versions and forms, without a host ("[127.0.0.1]:10024") or
// as a bare socket path ("private/dovecot-lmtp").
//
// Built in: the relay address is 127.0.0.1 or ::1 (also as ::ffff:127.0.0.1),
// the addresses content filters listen on, or a socket path (it contains
// "/"). Other 127.0.0.0/8 addresses are not assumed internal: set-ups (test
// networks among them) give local stand-ins for remote servers addresses of
// their own there. List them, or 127.0.0.0/8, to count them as internal.
type InternalRelays struct {
	entries []relayEntry
}

// relayEntry is one internal-relays entry: an address prefix or a host
// name, and a port (0: any).
type relayEntry struct {
	prefix netip.Prefix // valid for address entries
	host   string       // lowercased, for name entries
	port   int
}

// ErrBadInternalRelay is wrapped by ParseInternalRelays for a bad entry.
var ErrBadInternalRelay = errors.New("logparse: invalid internal relay")

// ParseInternalRelays parses internal-relays entries. Each entry is
//
//	ADDR or PREFIX         10.0.0.5, 10.1.0.0/16, 127.0.0.0/8, 2001:db8::/32, [2001:db8::1]
//	[ADDR]:PORT, ADDR:PORT [10.0.0.5]:10024, 10.0.0.5:10024, [::1]:10026
//	HOST or HOST:PORT      filter.example.net, filter.example.net:10024, [filter]:10024
//
// An address entry matches the address in the relay's brackets, a HOST
// entry the name before them (case-insensitive); with a port, only that
// port. Entries may also be given comma or space separated in one string.
func ParseInternalRelays(list []string) (*InternalRelays, error) {
	r := &InternalRelays{}
	for _, item := range list {
		for _, s := range strings.FieldsFunc(item, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' }) {
			e, err := parseRelayEntry(s)
			if err != nil {
				return nil, fmt.Errorf("%w %q: %v; accepted: ADDR, PREFIX (10.0.0.0/8), [ADDR]:PORT, HOST or HOST:PORT", ErrBadInternalRelay, s, err)
			}
			r.entries = append(r.entries, e)
		}
	}
	return r, nil
}

func parseRelayEntry(s string) (relayEntry, error) {
	var e relayEntry
	s = strings.ToLower(s)
	host := s
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return e, errors.New("missing ]")
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return e, fmt.Errorf("unexpected %q after ]", rest)
			}
			p, err := parsePort(rest[1:])
			if err != nil {
				return e, err
			}
			e.port = p
		}
	case strings.Count(s, ":") == 1:
		// HOST:PORT or IPv4:PORT; more than one colon is an IPv6 address.
		i := strings.IndexByte(s, ':')
		p, err := parsePort(s[i+1:])
		if err != nil {
			return e, err
		}
		host, e.port = s[:i], p
	}
	host = strings.TrimPrefix(host, "ipv6:")
	if host == "" {
		return e, errors.New("empty host")
	}
	if strings.Contains(host, "/") {
		p, err := netip.ParsePrefix(host)
		if err != nil {
			return e, errors.New("not an address prefix")
		}
		e.prefix = p.Masked()
		return e, nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return e, errors.New("address with a zone")
		}
		a = a.Unmap()
		e.prefix = netip.PrefixFrom(a, a.BitLen())
		return e, nil
	}
	if err := dnsname.Check(strings.TrimSuffix(host, ".")); err != nil {
		return e, fmt.Errorf("not an address or host name: %v", err)
	}
	e.host = host
	return e, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 || s[0] == '+' {
		return 0, fmt.Errorf("port %q is not 1-65535", s)
	}
	return p, nil
}

// Mark sets Internal on the deliveries of ds whose relay is a hop inside
// the host (see Internal); the others keep what the correlator found.
func (r *InternalRelays) Mark(ds []delivery.Delivery) {
	for i := range ds {
		if !ds[i].Internal && r.Internal(ds[i].Relay) {
			ds[i].Internal = true
		}
	}
}

// Internal reports whether a delivery to relay (as logged after "relay=")
// is a hop inside the host. This is the one rule mailtls applies, when it
// imports and when it follows a log.
func (r *InternalRelays) Internal(relay string) bool {
	if relay == "" || relay == "none" {
		return false
	}
	host, addr, port := splitLoggedRelay(relay)
	if strings.Contains(addr, "/") {
		return true // a unix socket
	}
	if (r == nil || len(r.entries) == 0) && strings.IndexByte(addr, ':') < 0 {
		// Without a list, an IPv4 address is internal only as loopback,
		// which netip spells in one way only: no parse needed.
		return addr == "127.0.0.1"
	}
	a, err := netip.ParseAddr(strings.TrimPrefix(strings.ToLower(addr), "ipv6:"))
	ok := err == nil && a.Zone() == ""
	if ok {
		a = a.Unmap()
		if a == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || a == netip.IPv6Loopback() {
			return true
		}
	}
	if r == nil {
		return false
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, e := range r.entries {
		if e.port != 0 && e.port != port {
			continue
		}
		if e.host != "" {
			if e.host == host || strings.TrimSuffix(e.host, ".") == host {
				return true
			}
		} else if ok && e.prefix.Contains(a) {
			return true
		}
	}
	return false
}

// splitLoggedRelay splits "host[addr]:port" (any part may be missing). A
// relay without brackets is a host name, or a socket path when it holds a
// "/", returned as addr.
func splitLoggedRelay(relay string) (host, addr string, port int) {
	i := strings.IndexByte(relay, '[')
	if i < 0 {
		if strings.Contains(relay, "/") {
			return "", relay, 0
		}
		return relay, "", 0
	}
	host = relay[:i]
	rest := relay[i+1:]
	j := strings.LastIndexByte(rest, ']')
	if j < 0 {
		return host, "", 0 // cut short: not a relay Postfix logs
	}
	addr = rest[:j]
	if p, ok := strings.CutPrefix(rest[j+1:], ":"); ok {
		if n, err := strconv.Atoi(p); err == nil && n > 0 && n < 65536 {
			port = n
		}
	}
	return host, addr, port
}
