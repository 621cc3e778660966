package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mailtls/mailtls/bench/internal/harness"
)

// httpServerName is the lookup-table name of mailtls serve with --http.
const httpServerName = "mailtls serve --http (scraped 1/s)"

// Overrides of the lookup benchmark's database.
const lookupTable = `[192.0.2.1]:25 encrypt
.example.com verify match=hostname:nexthop
example.org encrypt protocols=>=TLSv1.2
.corp.example secure match=.corp.example
mail.example.net dane
`

// commonKeys are answered by all three servers without DNS:
// mta-sts-daemon answers NOTFOUND at once for IP literals and .parent keys
// (responder.py: "Skip lookups for parent domain policies", is_ipaddr),
// while a domain name would make it resolve _mta-sts TXT records.
const commonKeys = "[192.0.2.1]:25,[198.51.100.7]:25,.example.com,.example.net"

// mixKeys is what Postfix sends mailtls: domains (exact override,
// .parent wildcard, default, mixed case) and a bracketed next-hop.
const mixKeys = "example.org,mx1.a.corp.example,gmail.example,[192.0.2.1]:25,Example.ORG,b.example.com"

type lookupStat struct {
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	PerSec   float64 `json:"per_sec"`
	P50      int64   `json:"p50_us"`
	P99      int64   `json:"p99_us"`
	P999     int64   `json:"p999_us"`
	Max      int64   `json:"max_us"`
}

// series is one row of a lookup table: the same test repeated.
type series struct {
	server, proto, keys string
	conns               int
	runs                []lookupStat
}

func (s *series) med(f func(lookupStat) float64) float64 {
	xs := make([]float64, len(s.runs))
	for i, r := range s.runs {
		xs[i] = f(r)
	}
	return harness.Median(xs)
}

type lookupResult struct {
	addrs      map[string]string
	mtsVersion string
	uvloop     bool
	rows       []*series // in table order
	other      []*series // 32 connections with the other CPU placement
	// ratios per connection count: median over runs of per-run ratios.
	vsMTS, vsEcho map[int][]float64
	// vsHTTP: mailtls serve with the --http listener, scraped every
	// second, over the same server without it.
	vsHTTP map[int][]float64
	// cpuHTTP: server CPU time per lookup with the listener ÷ without,
	// per run (from /proc/PID/stat around each test; the scrapes'
	// CPU counts against the listener). Less noisy than lookups/s: a
	// server pinned to one CPU runs at whatever rate the client allows.
	cpuHTTP map[int][]float64
	scrapes int64 // /metrics scrapes that succeeded during the tests
	only    string
}

// benchLookupFor is a socketmap test of length d.
func benchLookupFor(cfg config, d time.Duration, addr string, conns int, keys string) (lookupStat, error) {
	c := cfg
	c.dur = d
	return benchLookup(c, cfg.pin, "socketmap", addr, conns, keys)
}

func benchLookup(cfg config, pin bool, proto, addr string, conns int, keys string) (lookupStat, error) {
	argv := []string{cfg.tool, "lookup", "--proto", proto, "--addr", addr,
		"--conns", strconv.Itoa(conns), "--duration", cfg.dur.String(), "--keys", keys, "--format", "json"}
	if pin {
		argv = append([]string{"taskset", "-c", "1"}, argv...)
	}
	r, err := harness.Run(cfg.dur+30*time.Second, false, argv...)
	if err != nil {
		return lookupStat{}, err
	}
	var st lookupStat
	if err := json.Unmarshal(r.Stdout, &st); err != nil {
		return lookupStat{}, fmt.Errorf("mailtls-bench lookup output %q: %w", r.Stdout, err)
	}
	return st, nil
}

type servers struct {
	ours, oursHTTP, mts, echo *harness.Proc
	addr                      map[string]string // "ours", "ours-tcp", "ours-http", "http", "mts", "echo"
}

// scrapeEvery is how often the lookup tests scrape /metrics of the server
// with the HTTP listener: 15 times Prometheus's default interval.
const scrapeEvery = time.Second

// scrapeMetrics GETs /metrics every scrapeEvery until stop is closed, and
// then sends the number of scrapes that succeeded on done.
func scrapeMetrics(addr string, stop <-chan struct{}, done chan<- int64) {
	var ok int64
	defer func() { done <- ok }()
	c := &http.Client{Timeout: 5 * time.Second}
	t := time.NewTicker(scrapeEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		resp, err := c.Get("http://" + addr + "/metrics")
		if err != nil {
			continue
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode == 200 {
			ok++
		}
	}
}

// startServers starts the servers of the lookup tests. only "http" starts
// just mailtls serve without and with the HTTP listener.
func startServers(cfg config, dir string, pin bool, only string) (*servers, error) {
	var pre []string
	if pin {
		pre = []string{"taskset", "-c", "0"}
	}
	s := &servers{addr: map[string]string{}}
	po, pt, pm, pe := harness.MustFreePort(), harness.MustFreePort(), harness.MustFreePort(), harness.MustFreePort()
	s.addr["ours"] = fmt.Sprintf("127.0.0.1:%d", po)
	s.addr["ours-tcp"] = fmt.Sprintf("127.0.0.1:%d", pt)
	s.addr["mts"] = fmt.Sprintf("127.0.0.1:%d", pm)
	s.addr["echo"] = fmt.Sprintf("127.0.0.1:%d", pe)
	s.addr["ours-http"] = fmt.Sprintf("127.0.0.1:%d", harness.MustFreePort())
	s.addr["http"] = fmt.Sprintf("127.0.0.1:%d", harness.MustFreePort())
	db := filepath.Join(dir, "lookup.db")
	var err error
	s.ours, err = harness.Start(cfg.logs, "serve", append(pre, cfg.bin, "serve", "--db", db,
		"--socketmap", s.addr["ours"], "--tcp", s.addr["ours-tcp"], "--http", "", "--sources", "override", "--log-level", "warn")...)
	if err != nil {
		return nil, err
	}
	s.oursHTTP, err = harness.Start(cfg.logs, "serve-http", append(pre, cfg.bin, "serve", "--db", db,
		"--socketmap", s.addr["ours-http"], "--tcp", "", "--http", s.addr["http"], "--sources", "override", "--log-level", "warn")...)
	if err != nil {
		return nil, err
	}
	if only == "http" {
		for _, a := range []string{s.addr["ours"], s.addr["ours-http"], s.addr["http"]} {
			if err := harness.WaitDial(a, s.ours, 20*time.Second); err != nil {
				return nil, err
			}
		}
		return s, nil
	}
	yml := filepath.Join(dir, "mta-sts-daemon.yml")
	if err := os.WriteFile(yml, []byte(fmt.Sprintf(mtsConfig, pm)), 0o644); err != nil {
		return nil, err
	}
	s.mts, err = harness.Start(cfg.logs, "mta-sts-daemon", append(pre, "mta-sts-daemon", "-c", yml, "-v", "warn")...)
	if err != nil {
		return nil, err
	}
	s.echo, err = harness.Start(cfg.logs, "bench-echo", append(pre, cfg.tool, "echo", "--addr", s.addr["echo"])...)
	if err != nil {
		return nil, err
	}
	for _, x := range []struct {
		p *harness.Proc
		a string
	}{{s.ours, s.addr["ours"]}, {s.ours, s.addr["ours-tcp"]}, {s.oursHTTP, s.addr["ours-http"]}, {s.oursHTTP, s.addr["http"]},
		{s.mts, s.addr["mts"]}, {s.echo, s.addr["echo"]}} {
		if err := harness.WaitDial(x.a, x.p, 20*time.Second); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *servers) stop() {
	for _, p := range []*harness.Proc{s.ours, s.oursHTTP, s.mts, s.echo} {
		if p != nil {
			_ = p.Stop(10 * time.Second)
		}
	}
}

// mtsConfig is mta-sts-daemon.yml(5): listen on loopback, in-memory cache.
const mtsConfig = `host: 127.0.0.1
port: %d
reuse_port: true
shutdown_timeout: 2
cache:
  type: internal
  options:
    cache_size: 10000
default_zone:
  strict_testing: false
  timeout: 4
`

func runLookup(_ context.Context, cfg config) *lookupResult {
	logf("lookup: setting up")
	dir := filepath.Join(cfg.dir, "lookup")
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fatalf("%v", err)
	}
	tbl := filepath.Join(dir, "overrides.txt")
	if err := os.WriteFile(tbl, []byte(lookupTable), 0o644); err != nil {
		fatalf("%v", err)
	}
	if _, err := harness.Run(time.Minute, true, cfg.bin, "--db", filepath.Join(dir, "lookup.db"), "policy", "import", tbl); err != nil {
		fatalf("lookup: %v", err)
	}
	res := &lookupResult{
		mtsVersion: harness.DpkgVersion("postfix-mta-sts-resolver"),
		vsMTS:      map[int][]float64{}, vsEcho: map[int][]float64{}, vsHTTP: map[int][]float64{}, cpuHTTP: map[int][]float64{},
		only: cfg.lookupOnly,
	}
	if _, err := harness.Run(10*time.Second, true, "/usr/bin/python3", "-c", "import uvloop"); err == nil {
		res.uvloop = true
	}
	srv, err := startServers(cfg, dir, cfg.pin, cfg.lookupOnly)
	if err != nil {
		fatalf("lookup: %v", err)
	}
	res.addrs = srv.addr
	stopScrape := make(chan struct{})
	scraped := make(chan int64, 1)
	go scrapeMetrics(srv.addr["http"], stopScrape, scraped)
	type spec struct{ name, proto, addrKey, keys string }
	specs := []spec{
		{"mailtls serve", "socketmap", "ours", commonKeys},
		{"mta-sts-daemon", "socketmap", "mts", commonKeys},
		{"mailtls-bench echo (no-op)", "socketmap", "echo", commonKeys},
		{"mailtls serve", "tcp", "ours-tcp", commonKeys},
		{"mailtls serve", "socketmap", "ours", mixKeys},
		{httpServerName, "socketmap", "ours-http", commonKeys},
	}
	if cfg.lookupOnly == "http" {
		specs = []spec{specs[0], specs[5]}
	}
	rows := map[string]*series{}
	key := func(sp spec, c int) string { return fmt.Sprintf("%s|%s|%s|%d", sp.addrKey, sp.proto, sp.keys, c) }
	for _, c := range cfg.conns {
		for _, sp := range specs {
			s := &series{server: sp.name, proto: sp.proto, keys: sp.keys, conns: c}
			rows[key(sp, c)] = s
			res.rows = append(res.rows, s)
		}
	}
	for run := 0; run < cfg.runs; run++ {
		for _, c := range cfg.conns {
			got := map[string]lookupStat{}
			cpu := map[string]float64{} // server CPU seconds per lookup, by addrKey
			// Rotate the order from run to run so that no server always
			// goes first after a pause.
			for i := range specs {
				sp := specs[(i+run)%len(specs)]
				var proc *harness.Proc
				switch {
				case sp.addrKey == "ours" && sp.keys == commonKeys:
					proc = srv.ours
				case sp.addrKey == "ours-http":
					proc = srv.oursHTTP
				}
				var before float64
				if proc != nil {
					before = cpuSeconds(proc.Pid())
				}
				st, err := benchLookup(cfg, cfg.pin, sp.proto, srv.addr[sp.addrKey], c, sp.keys)
				if err != nil {
					fatalf("lookup: %s: %v", sp.name, err)
				}
				if n := float64(st.Requests); proc != nil && n > 0 {
					cpu[sp.addrKey] = (cpuSeconds(proc.Pid()) - before) / n
				}
				rows[key(sp, c)].runs = append(rows[key(sp, c)].runs, st)
				got[sp.addrKey+sp.proto+sp.keys] = st
				logf("lookup run %d/%d conns=%d %-26s %-9s %.0f/s p99 %dus errors %d", run+1, cfg.runs, c, sp.name, sp.proto, st.PerSec, st.P99, st.Errors)
			}
			ours := got["ours"+"socketmap"+commonKeys].PerSec
			if m := got["mts"+"socketmap"+commonKeys].PerSec; m > 0 {
				res.vsMTS[c] = append(res.vsMTS[c], ours/m)
			}
			if e := got["echo"+"socketmap"+commonKeys].PerSec; e > 0 {
				res.vsEcho[c] = append(res.vsEcho[c], ours/e)
			}
			if ours > 0 {
				res.vsHTTP[c] = append(res.vsHTTP[c], got["ours-http"+"socketmap"+commonKeys].PerSec/ours)
			}
			if cpu["ours"] > 0 && cpu["ours-http"] > 0 {
				res.cpuHTTP[c] = append(res.cpuHTTP[c], cpu["ours-http"]/cpu["ours"])
			}
		}
	}
	close(stopScrape)
	res.scrapes = <-scraped
	srv.stop()

	if cfg.pinCompare && cfg.lookupOnly == "" {
		other := !cfg.pin
		logf("lookup: 32 connections with the other CPU placement (pinned=%v)", other)
		ps, err := startServers(cfg, dir, other, "")
		if err != nil {
			fatalf("lookup other placement: %v", err)
		}
		for _, sp := range specs[:3] {
			s := &series{server: sp.name, proto: sp.proto, keys: sp.keys, conns: 32}
			for run := 0; run < cfg.runs; run++ {
				st, err := benchLookup(cfg, other, sp.proto, ps.addr[sp.addrKey], 32, sp.keys)
				if err != nil {
					fatalf("lookup other placement: %s: %v", sp.name, err)
				}
				s.runs = append(s.runs, st)
				logf("lookup other placement run %d/%d %-26s %.0f/s p99 %dus", run+1, cfg.runs, sp.name, st.PerSec, st.P99)
			}
			res.other = append(res.other, s)
		}
		ps.stop()
	}
	return res
}

// cpuSeconds is the user+system CPU time of process pid so far, from
// /proc/PID/stat (clock ticks of 1/100 s), or 0 when it cannot be read.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after its closing parenthesis (state is field 3, utime 14).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return float64(u+s) / 100
}
