package main

import (
	"bufio"
	"fmt"
	"math/bits"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtls/mailtls/bench/internal/harness"
)

// hist is a concurrent log-linear latency histogram in microseconds
// (8 sub-buckets per power of two: quantiles within ~12%).
type hist struct {
	counts [64 * 8]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

func histIndex(v uint64) int {
	if v < 16 {
		return int(v)
	}
	shift := bits.Len64(v) - 4
	return (shift+1)*8 + int(v>>shift) - 8
}

func histUpper(i int) uint64 {
	if i < 16 {
		return uint64(i)
	}
	shift := i/8 - 1
	m := uint64(i%8 + 8)
	return (m+1)<<shift - 1
}

func (h *hist) add(d time.Duration) {
	v := max(d.Microseconds(), 0)
	h.counts[histIndex(uint64(v))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
}

// quantile returns the upper bound (µs) of the bucket holding q, capped at
// the maximum.
func (h *hist) quantile(q float64) int64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return min(int64(histUpper(i)), h.max.Load())
		}
	}
	return h.max.Load()
}

// window collects what clients saw during one named period of a test.
type window struct {
	name    string
	start   time.Time
	end     time.Time
	lat     hist
	ok      atomic.Int64 // answered (OK/NOTFOUND)
	errs    atomic.Int64 // I/O errors, dial failures, TEMP/PERM/TIMEOUT replies
	wrong   atomic.Int64 // answered, but not an acceptable answer
	mu      sync.Mutex
	samples []string // first few errors and wrong answers
}

func (w *window) sample(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.samples) < 5 {
		w.samples = append(w.samples, s)
	}
}

// client drives persistent socketmap connections and checks every answer
// against expect (key -> acceptable full replies such as "OK encrypt").
type client struct {
	addr   string
	expect map[string][]string
	keys   []string
	pace   time.Duration // 0: as fast as possible; else one request per pace per connection
	cur    atomic.Pointer[window]
	stop   atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	all    []*window
}

func newClient(addr string, expect map[string][]string, pace time.Duration) *client {
	c := &client{addr: addr, expect: expect, pace: pace}
	for k := range expect {
		c.keys = append(c.keys, k)
	}
	return c
}

// phase starts a new window and returns it; the previous one ends now.
func (c *client) phase(name string) *window {
	w := &window{name: name, start: time.Now()}
	c.mu.Lock()
	if n := len(c.all); n > 0 {
		c.all[n-1].end = w.start
	}
	c.all = append(c.all, w)
	c.mu.Unlock()
	c.cur.Store(w)
	return w
}

func (c *client) run(conns int) {
	for i := 0; i < conns; i++ {
		c.wg.Add(1)
		go c.worker(i)
	}
}

func (c *client) halt() {
	c.stop.Store(true)
	c.wg.Wait()
	c.mu.Lock()
	if n := len(c.all); n > 0 && c.all[n-1].end.IsZero() {
		c.all[n-1].end = time.Now()
	}
	c.mu.Unlock()
}

func (c *client) worker(id int) {
	defer c.wg.Done()
	var (
		nc net.Conn
		br *bufio.Reader
	)
	defer func() {
		if nc != nil {
			nc.Close()
		}
	}()
	i := id
	next := time.Now()
	for !c.stop.Load() {
		if c.pace > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(c.pace)
			if time.Until(next) < -100*c.pace {
				next = time.Now() // do not burst to catch up after a stall
			}
		}
		if nc == nil {
			d, err := net.DialTimeout("tcp", c.addr, 2*time.Second)
			if err != nil {
				w := c.cur.Load()
				w.errs.Add(1)
				w.sample("dial: " + err.Error())
				time.Sleep(20 * time.Millisecond)
				continue
			}
			nc, br = d, bufio.NewReaderSize(d, 4096)
		}
		key := c.keys[i%len(c.keys)]
		i++
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		t0 := time.Now()
		reply, err := harness.SocketmapQuery(nc, br, "tlspolicy", key)
		lat := time.Since(t0)
		w := c.cur.Load()
		if err != nil {
			if c.stop.Load() {
				return
			}
			w.errs.Add(1)
			w.sample(fmt.Sprintf("%s: %v", key, err))
			nc.Close()
			nc = nil
			continue
		}
		w.lat.add(lat)
		if len(reply) < 3 || (reply[:3] != "OK " && (len(reply) < 9 || reply[:9] != "NOTFOUND ")) {
			w.errs.Add(1)
			w.sample(fmt.Sprintf("%s: reply %q", key, reply))
			continue
		}
		w.ok.Add(1)
		good := false
		for _, want := range c.expect[key] {
			if reply == want {
				good = true
				break
			}
		}
		if !good {
			w.wrong.Add(1)
			w.sample(fmt.Sprintf("%s: got %q, want %q", key, reply, c.expect[key]))
		}
	}
}

// visible polls key on its own connection until the reply is want, and
// returns how long that took from the call.
func visible(addr, key, want string, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	var (
		nc   net.Conn
		br   *bufio.Reader
		last string
	)
	defer func() {
		if nc != nil {
			nc.Close()
		}
	}()
	for time.Since(t0) < timeout {
		if nc == nil {
			d, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			nc, br = d, bufio.NewReader(d)
		}
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		r, err := harness.SocketmapQuery(nc, br, "tlspolicy", key)
		if err != nil {
			nc.Close()
			nc = nil
			continue
		}
		if r == want {
			return time.Since(t0), nil
		}
		last = r
		time.Sleep(time.Millisecond)
	}
	return 0, fmt.Errorf("%s still answers %q, not %q, after %s", key, last, want, timeout)
}
