package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/mailtls/mailtls/bench/internal/harness"
	"github.com/mailtls/mailtls/store"
)

// The memory section (BENCH_SECTIONS=memory): a daemon holding
// memOverrides overrides and memPublished cached published policies, with
// the published sources on. It measures start to first answer, peak and
// settled RSS, cached lookups at 32 connections against the no-op echo
// server, and the same lookups while a burst of new destinations waits on
// a slow resolver.
const (
	memOverrides = 1_000_000
	memPublished = 100_000
	// memBurst new destinations are looked up by memBurstConns connections
	// while the cached-key test runs; the fake resolver answers each query
	// after memDNSDelay.
	memBurst      = 5000
	memBurstConns = 128
	memDNSDelay   = 300 * time.Millisecond
	// memBudget is --resolve-timeout: how long a new destination's lookup
	// waits for its resolution.
	memBudget = 250 * time.Millisecond
)

// memCachedKeys: published destinations from the cache (DANE, MTA-STS,
// none) and an exact override.
const memCachedKeys = "p0.example,p1.example,p2.example,p3.example,p4.example,o0.example"

var memWant = map[string]string{
	"p0.example": "OK dane-only",
	"p1.example": "OK secure match=mx1.p1.example servername=hostname",
	"p2.example": "OK may",
	"o0.example": "OK encrypt",
}

type memoryResult struct {
	overrides, published int
	fill                 string
	firstAns             []float64 // ms, exec to first OK answer
	loaded               []float64 // ms, exec to the log line saying both start-up loads are done
	warmOK               []bool    // the first lookups of every kind were checked before the loads were done
	hwm, rss             []float64 // KiB: VmHWM after the first answer and the load tests, VmRSS settled
	cached, echo         series
	quiet, burst         series
	burstSent, burstOK   []int64
	burstWall            []float64
	resolverQueries      int64
}

// publishedEntry is package published's stored form of a cache entry (v1),
// for three kinds of destination: DANE, MTA-STS enforce, none.
func publishedEntry(i int, now time.Time) (source, policy string, data []byte) {
	d := fmt.Sprintf("p%d.example", i)
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	resolved, refresh := ts(now.Add(-time.Hour)), ts(now.Add(23*time.Hour))
	switch i % 3 {
	case 0:
		source, policy = "dane", "dane-only"
		data = fmt.Appendf(nil, `{"v":1,"result":{"domain":%q,"source":"dane","policy":"dane-only","resolved_at":%q,"evidence":{"mx":[{"host":"mx1.%s","tlsa":["3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"],"authenticated":true,"usable":true}],"mx_authenticated":true,"ad_trusted":true,"notes":["mta-sts: no _mta-sts TXT record"]}},"refresh_at":%q}`,
			d, resolved, d, refresh)
	case 1:
		source, policy = "mta-sts", fmt.Sprintf("secure match=mx1.%s servername=hostname", d)
		text := fmt.Sprintf("version: STSv1\nmode: enforce\nmx: mx1.%s\nmax_age: 604800\n", d)
		data = fmt.Appendf(nil, `{"v":1,"result":{"domain":%q,"source":"mta-sts","policy":%q,"resolved_at":%q,"evidence":{"mx":[{"host":"mx1.%s","authenticated":false,"usable":false,"sts_match":true}],"mx_authenticated":false,"ad_trusted":true,"notes":["dane: the MX answer is not DNSSEC-validated"]}},"refresh_at":%q,"policy":{"id":"20261201","text":%q,"fetched":%q,"expires":%q}}`,
			d, policy, resolved, d, refresh, text, resolved, ts(now.Add(6*24*time.Hour)))
	default:
		source = "none"
		data = fmt.Appendf(nil, `{"v":1,"result":{"domain":%q,"source":"none","resolved_at":%q,"evidence":{"mx":[{"host":"mx1.%s","authenticated":false,"usable":false}],"mx_authenticated":false,"ad_trusted":true,"notes":["dane: the MX answer is not DNSSEC-validated","mta-sts: no _mta-sts TXT record"]}},"refresh_at":%q}`,
			d, resolved, d, refresh)
	}
	return source, policy, data
}

// memoryDB returns a database with n overrides (the growth table) and m
// published cache entries, made once and cached in the work directory for
// a day (the published entries are valid for that long).
func memoryDB(cfg config, n, m int) (db, note string) {
	dir := filepath.Join(cfg.dir, "memory")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fatalf("%v", err)
	}
	db = filepath.Join(dir, fmt.Sprintf("mem-%d-%d.db", n, m))
	if fi, err := os.Stat(db + ".filled"); err == nil && time.Since(fi.ModTime()) < 20*time.Hour {
		b, _ := os.ReadFile(db + ".filled")
		return db, "cached database: " + strings.TrimSpace(string(b))
	}
	rmDB(db)
	tbl := filepath.Join(dir, fmt.Sprintf("overrides-%d.txt", n))
	if err := writeTable(tbl, n); err != nil {
		fatalf("%v", err)
	}
	t0 := time.Now()
	if _, err := harness.Run(30*time.Minute, true, cfg.bin, "--db", db, "policy", "import", tbl); err != nil {
		fatalf("memory: policy import: %v", err)
	}
	imp := time.Since(t0)
	ctx := context.Background()
	st, err := store.Open(ctx, db)
	if err != nil {
		fatalf("memory: %v", err)
	}
	t1 := time.Now()
	for i := 0; i < m; i++ {
		src, pol, data := publishedEntry(i, t1)
		if err := st.SavePublished(ctx, fmt.Sprintf("p%d.example", i), src, pol, data, t1.Add(7*24*time.Hour)); err != nil {
			fatalf("memory: %v", err)
		}
	}
	if err := st.Close(); err != nil {
		fatalf("memory: %v", err)
	}
	note = fmt.Sprintf("filled %s: `policy import` of the growth table (%d lines) in %.0f s, %d published entries saved in %.0f s",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), n, imp.Seconds(), m, time.Since(t1).Seconds())
	if err := os.WriteFile(db+".filled", []byte(note+"\n"), 0o644); err != nil {
		fatalf("%v", err)
	}
	return db, note
}

// slowDNS is a loopback DNS server that answers every query NXDOMAIN after
// delay, each in its own goroutine: a resolver that is slow but up.
type slowDNS struct {
	udp, tcp *dns.Server
	addr     string
	queries  atomic.Int64
}

func startSlowDNS(delay time.Duration) (*slowDNS, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return nil, err
	}
	s := &slowDNS{addr: pc.LocalAddr().String()}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		s.queries.Add(1)
		time.Sleep(delay) // the slowness under test, not synchronisation
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNameError)
		_ = w.WriteMsg(m)
	})
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: ln, Handler: h}
	go func() { _ = s.udp.ActivateAndServe() }()
	go func() { _ = s.tcp.ActivateAndServe() }()
	return s, nil
}

func (s *slowDNS) stop() {
	_ = s.udp.Shutdown()
	_ = s.tcp.Shutdown()
}

// memLoadedLine is what `mailtls serve` logs when both start-up loads are
// done and it answers from memory alone.
const memLoadedLine = "start-up loads done"

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logHas reports whether p's log holds want after offset.
func logHas(p *harness.Proc, offset int64, want string) bool {
	b, err := os.ReadFile(p.LogPath)
	return err == nil && int64(len(b)) > offset && strings.Contains(string(b[offset:]), want)
}

// waitLogLine polls p's log, from offset on, for a line containing want
// and returns when it was first seen (within the 10 ms of polling).
func waitLogLine(p *harness.Proc, offset int64, want string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if logHas(p, offset, want) {
			return time.Now(), nil
		}
		if p.Exited() {
			return time.Time{}, fmt.Errorf("%s exited (see %s)", p.Name, p.LogPath)
		}
		time.Sleep(10 * time.Millisecond) // polling a file, not synchronisation
	}
	return time.Time{}, fmt.Errorf("%w: no %q in %s", harness.ErrTimeout, want, p.LogPath)
}

// burst looks up n distinct new destinations over conns connections, at
// most until deadline, and returns how many it sent and how many got an
// OK answer.
func burst(addr string, run, n, conns int, deadline time.Time) (sent, ok int64) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for time.Now().Before(deadline) {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				_ = c.SetDeadline(deadline.Add(5 * time.Second))
				got, err := harness.SocketmapQuery(c, br, "tlspolicy", fmt.Sprintf("new%d-r%d.burst.test", i, run))
				atomic.AddInt64(&sent, 1)
				if err != nil {
					return
				}
				if strings.HasPrefix(got, "OK ") {
					atomic.AddInt64(&ok, 1)
				}
			}
		})
	}
	wg.Wait()
	return sent, ok
}

func runMemory(_ context.Context, cfg config) *memoryResult {
	res := &memoryResult{overrides: memOverrides, published: memPublished}
	db, note := memoryDB(cfg, memOverrides, memPublished)
	res.fill = note
	logf("memory: %s", note)
	fake, err := startSlowDNS(memDNSDelay)
	if err != nil {
		fatalf("memory: %v", err)
	}
	defer fake.stop()
	var pre []string
	if cfg.pin {
		pre = []string{"taskset", "-c", "0"}
		// The fake resolver and the burst run in this process: keep them
		// on the load client's CPU, off the server's.
		var set unix.CPUSet
		set.Set(1)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			fatalf("memory: pinning benchrun to CPU 1: %v", err)
		}
		defer func() {
			var all unix.CPUSet
			for i := range runtime.NumCPU() {
				all.Set(i)
			}
			_ = unix.SchedSetaffinity(0, &all)
		}()
	}
	res.cached = series{server: "mailtls serve", proto: "socketmap", keys: memCachedKeys, conns: 32}
	res.echo = series{server: "mailtls-bench echo (no-op)", proto: "socketmap", keys: memCachedKeys, conns: 32}
	res.quiet = series{server: "mailtls serve, no resolution", proto: "socketmap", keys: memCachedKeys, conns: 32}
	res.burst = series{server: "mailtls serve, burst of new destinations", proto: "socketmap", keys: memCachedKeys, conns: 32}
	echoAddr := fmt.Sprintf("127.0.0.1:%d", harness.MustFreePort())
	echo, err := harness.Start(cfg.logs, "mem-echo", append(pre, cfg.tool, "echo", "--addr", echoAddr)...)
	if err != nil {
		fatalf("%v", err)
	}
	defer func() { _ = echo.Stop(10 * time.Second) }()
	if err := harness.WaitDial(echoAddr, echo, 20*time.Second); err != nil {
		fatalf("memory: %v", err)
	}
	for run := 0; run < cfg.runs; run++ {
		// Each run serves a fresh copy: the burst's destinations are
		// saved in the cache and must not be loaded by the next run.
		runDB := filepath.Join(filepath.Dir(db), "serve.db")
		rmDB(runDB)
		if _, err := harness.Run(5*time.Minute, true, "cp", db, runDB); err != nil {
			fatalf("memory: copying the database: %v", err)
		}
		settle()
		addr := fmt.Sprintf("127.0.0.1:%d", harness.MustFreePort())
		logStart := fileSize(filepath.Join(cfg.logs, "serve-memory.log"))
		t0 := time.Now()
		p, err := harness.Start(cfg.logs, "serve-memory", append(pre, cfg.bin, "serve", "--db", runDB, "--socketmap", addr, "--tcp", "", "--http", "",
			"--sources", "override,dane,mta-sts", "--resolver", fake.addr, "--resolve-timeout", memBudget.String(), "--log-level", "info")...)
		if err != nil {
			fatalf("%v", err)
		}
		if err := firstAnswer(addr, "o0.example", memWant["o0.example"], p, 5*time.Minute); err != nil {
			fatalf("memory: %v", err)
		}
		res.firstAns = append(res.firstAns, float64(time.Since(t0).Microseconds())/1000)
		// Every kind of answer, at once: while the loads still run these
		// come from the store, and must be what the loaded daemon says.
		for k, w := range memWant {
			if got := queryOnce(addr, k); got != w {
				fatalf("memory: lookup %s = %q, want %q", k, got, w)
			}
		}
		res.warmOK = append(res.warmOK, !logHas(p, logStart, memLoadedLine))
		loadedLine, err := waitLogLine(p, logStart, memLoadedLine, 5*time.Minute)
		if err != nil {
			fatalf("memory: %v", err)
		}
		res.loaded = append(res.loaded, float64(loadedLine.Sub(t0).Microseconds())/1000)
		time.Sleep(3 * time.Second) // let the garbage of loading be collected, as growth does
		for _, x := range []struct {
			s    *series
			addr string
		}{{&res.cached, addr}, {&res.echo, echoAddr}} {
			st, err := benchLookup(cfg, cfg.pin, "socketmap", x.addr, 32, memCachedKeys)
			if err != nil {
				fatalf("memory: %v", err)
			}
			x.s.runs = append(x.s.runs, st)
		}
		// Burst: cached keys for 5 s with no resolution going on, then the
		// same while new destinations wait on the slow resolver.
		c := cfg
		c.dur = 5 * time.Second
		q, err := benchLookup(c, cfg.pin, "socketmap", addr, 32, memCachedKeys)
		if err != nil {
			fatalf("memory: %v", err)
		}
		res.quiet.runs = append(res.quiet.runs, q)
		var (
			bsent, bok int64
			bwall      time.Duration
			wg         sync.WaitGroup
		)
		wg.Go(func() {
			time.Sleep(500 * time.Millisecond) // start inside the test window
			tb := time.Now()
			bsent, bok = burst(addr, run, memBurst, memBurstConns, tb.Add(4*time.Second))
			bwall = time.Since(tb)
		})
		b, err := benchLookup(c, cfg.pin, "socketmap", addr, 32, memCachedKeys)
		wg.Wait()
		if err != nil {
			fatalf("memory: %v", err)
		}
		res.burst.runs = append(res.burst.runs, b)
		res.burstSent = append(res.burstSent, bsent)
		res.burstOK = append(res.burstOK, bok)
		res.burstWall = append(res.burstWall, bwall.Seconds())
		res.hwm = append(res.hwm, float64(harness.ProcStatus(p.Pid(), "VmHWM")))
		res.rss = append(res.rss, float64(harness.ProcStatus(p.Pid(), "VmRSS")))
		logf("memory: first answer %.0f ms, all loaded %.0f ms, VmHWM %d MB, VmRSS %d MB; cached %.0f/s p99 %dus, echo %.0f/s; quiet p99 %dus, burst p99 %dus (%d new sent, %d OK in %.1fs)",
			res.firstAns[run], res.loaded[run], int64(res.hwm[run])/1024, int64(res.rss[run])/1024, res.cached.runs[run].PerSec, res.cached.runs[run].P99,
			res.echo.runs[run].PerSec, q.P99, b.P99, bsent, bok, bwall.Seconds())
		_ = p.Stop(10 * time.Second)
	}
	res.resolverQueries = fake.queries.Load()
	return res
}

func (r *report) memorySection(b *strings.Builder) {
	m := r.memory
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	med := harness.Median
	w("## 4. Memory and start-up with published policies\n\n")
	w("Database: %s overrides (the growth table) and %s cached published policies (a third each DANE `dane-only`, MTA-STS\n",
		harness.Int(int64(m.overrides)), harness.Int(int64(m.published)))
	w("`secure match=…`, none; package published's stored form). %s.\n", m.fill)
	w("Server: `mailtls serve --db DB --socketmap ADDR --sources override,dane,mta-sts --resolver FAKE --resolve-timeout %s`", memBudget)
	if r.cfg.pin {
		w(" under `taskset -c 0`; the load client, the fake resolver and the burst (benchrun) on CPU 1")
	}
	w(".\nFAKE is a loopback DNS server in benchrun answering every query NXDOMAIN after %s.\n", memDNSDelay)
	w("Start: from exec to the first `OK encrypt` for an override key over socketmap (new connection every 2 ms); all loaded: to the\n")
	w("daemon's log line %q (polled every 10 ms), after which it answers from memory alone. RSS: VmHWM and VmRSS\n", memLoadedLine)
	w("from /proc after the load tests. Cached keys `%s` (published DANE, MTA-STS, none; an override).\n", memCachedKeys)
	w("Burst: the cached-key test (5 s, 32 connections) alone, then again while %d connections look up up to %s distinct new\n",
		memBurstConns, harness.Int(memBurst))
	w("destinations (for at most 4 s, starting 0.5 s in); each new one waits for the slow resolver up to the %s budget (8 workers, queue of 1,024:\nbeyond it a new destination is answered at once).\n\n", memBudget)
	hwm, rss := med(m.hwm)/1024, med(m.rss)/1024
	fa := med(m.firstAns)
	ratio := make([]float64, len(m.cached.runs))
	for i := range m.cached.runs {
		ratio[i] = m.cached.runs[i].PerSec / m.echo.runs[i].PerSec
	}
	bp := make([]float64, len(m.burst.runs))
	for i := range m.burst.runs {
		bp[i] = float64(m.burst.runs[i].P99) / float64(m.quiet.runs[i].P99)
	}
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "**MISS**"
	}
	t := harness.Table{Head: []string{"target", "figure", "verdict"}}
	t.Add("RSS ≤ 200 MB (1M overrides + 100k cached policies)", fmt.Sprintf("VmHWM %.0f MB, VmRSS %.0f MB", hwm, rss), verdict(hwm <= 200))
	t.Add("start to first answer ≤ 1 s", fmt.Sprintf("%.0f ms (all loaded, answering from memory: %.0f ms)", fa, med(m.loaded)), verdict(fa <= 1000))
	t.Add("cached lookups, 32 connections ≥ 0.9× no-op echo", fmt.Sprintf("%.2f×", med(ratio)), verdict(med(ratio) >= 0.9))
	t.Add("cached-key p99 during a burst ≤ 2× no resolution", fmt.Sprintf("%.2f× (%s µs vs %s µs)", med(bp), us(m.burst.med(func(s lookupStat) float64 { return float64(s.P99) })),
		us(m.quiet.med(func(s lookupStat) float64 { return float64(s.P99) }))), verdict(med(bp) <= 2))
	w("%s\n", t.String())
	lt := harness.Table{Head: []string{"test", "conns", "lookups/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "errors"}}
	for _, s := range []*series{&m.cached, &m.echo, &m.quiet, &m.burst} {
		lt.Add(s.server, fmt.Sprint(s.conns), harness.Int(int64(s.med(func(x lookupStat) float64 { return x.PerSec }))),
			us(s.med(func(x lookupStat) float64 { return float64(x.P50) })), us(s.med(func(x lookupStat) float64 { return float64(x.P99) })),
			us(s.med(func(x lookupStat) float64 { return float64(x.P999) })), us(s.med(func(x lookupStat) float64 { return float64(x.Max) })),
			us(s.med(func(x lookupStat) float64 { return float64(x.Errors) })))
	}
	w("%s\n", lt.String())
	var sent, ok, wall []float64
	for i := range m.burstSent {
		sent, ok, wall = append(sent, float64(m.burstSent[i])), append(ok, float64(m.burstOK[i])), append(wall, m.burstWall[i])
	}
	w("Burst: %s new destinations looked up (median), %s answered OK (the default once the budget ran out or the queue was full), in %.1f s;\n",
		harness.Int(int64(med(sent))), harness.Int(int64(med(ok))), med(wall))
	w("the fake resolver got %s queries in all runs. Start to first answer per run: %v ms; to all loaded: %v ms; VmHWM per run: %v KiB.\n", harness.Int(m.resolverQueries), m.firstAns, m.loaded, m.hwm)
	warm := 0
	for _, ok := range m.warmOK {
		if ok {
			warm++
		}
	}
	w("In %d of %d runs the first lookups of every kind (override, DANE, MTA-STS, none) were answered, correctly, before the start-up loads were done.\n\n", warm, len(m.warmOK))
}
