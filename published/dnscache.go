package published

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/discover"
)

// DNS answers queries; *discover.Resolver is the real one. NXDOMAIN and
// NODATA are answers; an error is a failure (SERVFAIL, timeout).
type DNS interface {
	Lookup(ctx context.Context, name string, qtype uint16) (discover.Answer, error)
}

// Limits on how long DNS answers are cached. A TTL of 0, or a negative
// answer without an SOA, is cached for minTTL so that one resolution does
// not ask the same question twice; no answer is kept beyond maxTTL.
const (
	minTTL = 30 * time.Second
	maxTTL = 24 * time.Hour
)

// ADTrusted reports whether the AD bit from these resolvers can be trusted:
// only when every one is on loopback, as Postfix requires of a validating
// resolver (postconf(5), smtp_dns_support_level = dnssec). A name such as
// "localhost:53" is not trusted: only addresses are.
func ADTrusted(servers []string) bool {
	if len(servers) == 0 {
		return false
	}
	for _, s := range servers {
		host, _, err := net.SplitHostPort(s)
		if err != nil {
			host = s
		}
		a, err := netip.ParseAddr(strings.Trim(host, "[]"))
		if err != nil || !a.IsLoopback() {
			return false
		}
	}
	return true
}

type qkey struct {
	name  string
	qtype uint16
}

type cachedAnswer struct {
	a       discover.Answer
	expires time.Time
}

// dnsCache caches answers, positive and negative, for their TTL. Errors are
// not cached: the resolution that met one retries later as a whole.
type dnsCache struct {
	dns DNS
	now func() time.Time
	mu  sync.Mutex
	m   map[qkey]cachedAnswer
}

// lookup answers from the cache or asks; it also returns when the answer
// expires.
func (c *dnsCache) lookup(ctx context.Context, name string, qtype uint16) (discover.Answer, time.Time, error) {
	k := qkey{strings.ToLower(name), qtype}
	now := c.now()
	c.mu.Lock()
	ca, ok := c.m[k]
	if ok && now.Before(ca.expires) {
		c.mu.Unlock()
		return ca.a, ca.expires, nil
	}
	delete(c.m, k)
	c.mu.Unlock()
	a, err := c.dns.Lookup(ctx, name, qtype)
	if err != nil {
		return a, time.Time{}, err
	}
	ttl := min(max(time.Duration(a.TTL)*time.Second, minTTL), maxTTL)
	exp := now.Add(ttl)
	c.mu.Lock()
	c.m[k] = cachedAnswer{a, exp}
	c.mu.Unlock()
	return a, exp, nil
}

// expire drops every answer that has expired by now, so that the cache
// holds no more than the names resolved within maxTTL.
func (c *dnsCache) expire() {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, ca := range c.m {
		if !now.Before(ca.expires) {
			delete(c.m, k)
		}
	}
}
