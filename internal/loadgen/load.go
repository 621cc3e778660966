package loadgen

import (
	"github.com/mailtls/mailtls/policyd"

	"bufio"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBadLoadConfig is wrapped by RunLoad's configuration errors.
var ErrBadLoadConfig = errors.New("policyd: invalid load config")

// LoadConfig describes a lookup load test against a running server.
type LoadConfig struct {
	Network, Addr string        // "tcp" or "unix", and the address
	Proto         string        // "socketmap" (default) or "tcp"
	MapName       string        // socketmap map name; DefaultMapName if empty
	Conns         int           // persistent connections, one goroutine each; default 1
	Duration      time.Duration // stop after this long (0: no limit)
	MaxRequests   int64         // stop after this many requests in all (0: no limit)
	Keys          []string      // looked up round-robin; default {"example.com"}
}

// LoadResult summarises a load test. Latencies are per request, from
// write to complete reply, with about 3% resolution.
type LoadResult struct {
	Requests, Errors int64
	PerSec           float64
	P50, P99, P999   time.Duration
	Max              time.Duration
	Elapsed          time.Duration
}

// loadGrace is how long RunLoad waits for requests in flight once it
// decides to stop, before it closes the connections under them.
const loadGrace = 2 * time.Second

// RunLoad sends lookups over cfg.Conns persistent connections, each
// waiting for a reply before sending the next request, until Duration,
// MaxRequests or ctx ends it. Replies other than OK/NOTFOUND (200/500 for
// tcp) count as errors, as do failed connections, which are redialled; a
// worker stops when redialling fails.
func RunLoad(ctx context.Context, cfg LoadConfig) (LoadResult, error) {
	if cfg.Proto == "" {
		cfg.Proto = "socketmap"
	}
	if cfg.Proto != "socketmap" && cfg.Proto != "tcp" {
		return LoadResult{}, fmt.Errorf("%w: protocol %q (want socketmap or tcp)", ErrBadLoadConfig, cfg.Proto)
	}
	if cfg.Network == "" {
		cfg.Network = "tcp"
	}
	if cfg.Addr == "" {
		return LoadResult{}, fmt.Errorf("%w: no address", ErrBadLoadConfig)
	}
	if cfg.MapName == "" {
		cfg.MapName = policyd.DefaultMapName
	}
	if cfg.Conns <= 0 {
		cfg.Conns = 1
	}
	if cfg.Duration <= 0 && cfg.MaxRequests <= 0 && ctx.Done() == nil {
		return LoadResult{}, fmt.Errorf("%w: no Duration, MaxRequests or cancellable context: it would never stop", ErrBadLoadConfig)
	}
	keys := cfg.Keys
	if len(keys) == 0 {
		keys = []string{"example.com"}
	}
	reqs := make([][]byte, len(keys))
	for i, k := range keys {
		if cfg.Proto == "socketmap" {
			q := cfg.MapName + " " + k
			reqs[i] = fmt.Appendf(nil, "%d:%s,", len(q), q)
		} else {
			b := append([]byte("get "), policyd.AppendTCPEncoded(nil, k)...)
			reqs[i] = append(b, '\n')
		}
	}

	var (
		stop    atomic.Bool
		issued  atomic.Int64
		mu      sync.Mutex
		conns   = map[net.Conn]struct{}{}
		total   hist
		nreq    int64
		nerr    int64
		lastErr error
	)
	track := func(c net.Conn, add bool) {
		mu.Lock()
		defer mu.Unlock()
		if add {
			conns[c] = struct{}{}
		} else {
			delete(conns, c)
		}
	}
	var (
		graceMu  sync.Mutex
		grace    *time.Timer
		finished bool
	)
	halt := func() {
		stop.Store(true)
		graceMu.Lock()
		defer graceMu.Unlock()
		if grace != nil || finished {
			return
		}
		grace = time.AfterFunc(loadGrace, func() {
			mu.Lock()
			defer mu.Unlock()
			for c := range conns {
				c.Close()
			}
		})
	}
	defer func() {
		graceMu.Lock()
		finished = true
		if grace != nil {
			grace.Stop()
		}
		graceMu.Unlock()
	}()
	stopCtx := context.AfterFunc(ctx, halt)
	defer stopCtx()
	if cfg.Duration > 0 {
		t := time.AfterFunc(cfg.Duration, halt)
		defer t.Stop()
	}

	dialer := net.Dialer{Timeout: 5 * time.Second}
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := new(hist)
			var n, errs int64
			var werr error
			defer func() {
				mu.Lock()
				total.merge(h)
				nreq += n
				nerr += errs
				if werr != nil && lastErr == nil {
					lastErr = werr
				}
				mu.Unlock()
			}()
			var (
				c  net.Conn
				br *bufio.Reader
			)
			closeConn := func() {
				if c != nil {
					track(c, false)
					c.Close()
					c = nil
				}
			}
			defer closeConn()
			var scratch []byte
			i := w % len(reqs)
			for !stop.Load() {
				if c == nil {
					nc, err := dialer.DialContext(ctx, cfg.Network, cfg.Addr)
					if err != nil {
						if !stop.Load() {
							errs++
							werr = err
						}
						return
					}
					c, br = nc, bufio.NewReaderSize(nc, 4096)
					track(c, true)
				}
				if cfg.MaxRequests > 0 && issued.Add(1) > cfg.MaxRequests {
					return
				}
				req := reqs[i]
				if i++; i == len(reqs) {
					i = 0
				}
				t0 := time.Now()
				ok, err := roundTrip(c, br, req, cfg.Proto == "socketmap", &scratch)
				if err != nil {
					if stop.Load() {
						return
					}
					errs++ // and redial
					closeConn()
					continue
				}
				h.add(time.Since(t0))
				n++
				if !ok {
					errs++
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if nreq == 0 && lastErr != nil {
		return LoadResult{Errors: nerr, Elapsed: elapsed}, fmt.Errorf("policyd: load test: %w", lastErr)
	}
	res := LoadResult{
		Requests: nreq,
		Errors:   nerr,
		P50:      total.quantile(0.50),
		P99:      total.quantile(0.99),
		P999:     total.quantile(0.999),
		Max:      time.Duration(total.max),
		Elapsed:  elapsed,
	}
	if elapsed > 0 {
		res.PerSec = float64(nreq) / elapsed.Seconds()
	}
	return res, nil
}

// roundTrip sends one request and reads its reply. ok reports whether the
// reply was a lookup answer (found or not found).
func roundTrip(c net.Conn, br *bufio.Reader, req []byte, socketmap bool, scratch *[]byte) (ok bool, err error) {
	if _, err := c.Write(req); err != nil {
		return false, err
	}
	if socketmap {
		rep, err := policyd.ReadNetstring(br, policyd.MaxReply, scratch)
		if err != nil {
			return false, err
		}
		return hasPrefix(rep, "OK ") || hasPrefix(rep, "NOTFOUND "), nil
	}
	line, err := policyd.ReadTCPLine(br, policyd.MaxTCPReply, scratch)
	if err != nil {
		return false, err
	}
	return hasPrefix(line, "200 ") || hasPrefix(line, "500 "), nil
}

func hasPrefix(b []byte, p string) bool {
	return len(b) >= len(p) && string(b[:len(p)]) == p
}

// hist is a fixed-size log-linear latency histogram in nanoseconds: values
// below 64 ns have a bucket each, and every power of two above is split in
// 32 buckets, so a quantile is off by at most 1/32.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	max    int64
}

const (
	histSubBits = 5
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits + 1) * histSub
)

func histIndex(v uint64) int {
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	return (shift+1)*histSub + int(v>>shift) - histSub
}

// histUpper returns the largest value that falls in bucket i.
func histUpper(i int) uint64 {
	if i < 2*histSub {
		return uint64(i)
	}
	shift := i/histSub - 1
	m := uint64(i%histSub + histSub)
	return (m+1)<<shift - 1
}

func (h *hist) add(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[histIndex(uint64(v))]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the upper bound of the bucket holding the q-quantile,
// capped at the maximum seen.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(int64(histUpper(i)), h.max))
		}
	}
	return time.Duration(h.max)
}

// ServeEcho answers every socketmap request on ln with "OK may" without
// looking anything up: the ceiling of what the machine and the protocol
// allow, for comparison with a real server in benchmarks. It returns nil
// when ctx is done.
func ServeEcho(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("policyd: echo accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer nc.Close()
			stopConn := context.AfterFunc(ctx, func() { nc.Close() })
			defer stopConn()
			br := bufio.NewReaderSize(nc, policyd.ReadBufSize)
			bw := bufio.NewWriterSize(nc, policyd.WriteBufSize)
			var scratch []byte
			for {
				if br.Buffered() == 0 && bw.Flush() != nil {
					return
				}
				if _, err := policyd.ReadNetstring(br, policyd.MaxQuery, &scratch); err != nil {
					return
				}
				policyd.WriteNetstring(bw, "OK ", "may")
			}
		}()
	}
}
