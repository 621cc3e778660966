package published

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/discover"
	"github.com/mailtls/mailtls/internal/testnet"
)

// fakeClock moves only when told. After channels fire when Advance passes
// their deadline; Timers tells how many are waiting, so that a test can
// wait for a lookup to start waiting without sleeping.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []fakeTimer
	changed chan struct{} // closed and replaced on every new timer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(t time.Time) *fakeClock {
	return &fakeClock{now: t, changed: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{c.now.Add(d), ch})
	close(c.changed)
	c.changed = make(chan struct{})
	return ch
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !c.now.Before(t.at) {
			t.ch <- c.now
			continue
		}
		kept = append(kept, t)
	}
	c.timers = kept
}

// timerCount is how many timers wait now. A timer whose wait ended
// another way (its lookup's resolution finished first) still counts: its
// channel is buffered and nobody reads it.
func (c *fakeClock) timerCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// waitTimers blocks until at least n timers wait, or the test times out.
func (c *fakeClock) waitTimers(t *testing.T, n int) {
	t.Helper()
	for {
		c.mu.Lock()
		got, ch := len(c.timers), c.changed
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-time.After(10 * time.Second): // a safety net, never the expected path
			t.Fatalf("%d timers wait, want %d", got, n)
		}
	}
}

// env is a small Internet on 127.0.0.1: a DNS server and an HTTPS server
// for mta-sts.<domain> hosts, trusted through a test CA.
type env struct {
	t     *testing.T
	zone  *testnet.Zone
	dns   string
	clock *fakeClock
	port  int
	ca    *testnet.CA

	mu       sync.Mutex
	policies map[string]string // host -> body; missing: 404
	status   map[string]int    // host -> HTTP status instead
	slow     map[string]bool   // host -> never answers
	fetches  map[string]int
}

// stsHosts are the policy hosts the HTTPS server's certificate names.
var stsHosts = []string{"sts.example", "testing.example", "none.example", "mismatch.example", "big.example",
	"slow.example", "dane.example", "cache.example", "gone.example", "fail.example", "active.example",
	"idle.example", "down.example", "nosig.example"}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, zone: testnet.NewZone(), clock: newFakeClock(testnet.Now), ca: testnet.NewCA(t),
		policies: map[string]string{}, status: map[string]int{}, slow: map[string]bool{}, fetches: map[string]int{}}
	e.dns = testnet.StartDNS(t, e.zone)
	var names []string
	for _, h := range stsHosts {
		names = append(names, "mta-sts."+h)
	}
	cert := testnet.Leaf(t, e.ca, testnet.Now.AddDate(0, -1, 0), testnet.Now.AddDate(1, 0, 0), names...)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.Host)
		e.mu.Lock()
		e.fetches[host]++
		body, ok := e.policies[host]
		status, slow := e.status[host], e.slow[host]
		e.mu.Unlock()
		switch {
		case slow:
			<-r.Context().Done()
			return
		case status != 0:
			w.WriteHeader(status)
			return
		case !ok || r.URL.Path != "/.well-known/mta-sts.txt":
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body) //nolint:errcheck // test server
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	e.port, _ = strconv.Atoi(port)
	return e
}

func (e *env) policy(host, body string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.policies["mta-sts."+host] = body
}

func (e *env) setStatus(host string, status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.status["mta-sts."+host] = status
}

func (e *env) setSlow(host string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.slow["mta-sts."+host] = true
}

func (e *env) fetchCount(host string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.fetches["mta-sts."+host]
}

// sts publishes an MTA-STS TXT record and the policy host's address.
func (e *env) sts(domain, id string) {
	e.zone.Add(e.t, "_mta-sts."+domain+". 300 IN TXT \"v=STSv1; id="+id+";\"", "mta-sts."+domain+". 300 IN A 127.0.0.1")
}

// resolver returns a started Resolver using the env; mod edits its Config.
func (e *env) resolver(mod func(*Config)) *Resolver {
	e.t.Helper()
	cfg := Config{
		DNS:          &discover.Resolver{Servers: []string{e.dns}, Timeout: 2 * time.Second},
		Resolver:     e.dns,
		TrustAD:      true,
		RootCAs:      e.ca.Pool,
		PolicyPort:   e.port,
		FetchTimeout: 5 * time.Second,
		Clock:        e.clock,
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	r.Start()
	e.t.Cleanup(r.Close)
	return r
}

func resolve(t *testing.T, r *Resolver, d string) Result {
	t.Helper()
	res, err := r.Resolve(context.Background(), d)
	if err != nil {
		t.Fatalf("Resolve(%s): %v", d, err)
	}
	return res
}
