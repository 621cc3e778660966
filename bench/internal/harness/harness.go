// Package harness holds what the benchmark driver (bench/cmd/benchrun) and
// the fault suite (bench/cmd/faults) share: starting and stopping processes,
// timing commands with their peak memory, waiting for listeners, medians,
// Markdown tables and machine facts.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrTimeout is returned when something did not happen in time.
var ErrTimeout = errors.New("harness: timed out")

// Proc is a background process started by Start. Its output goes to a log
// file.
type Proc struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string
	done    chan struct{}
	err     error
	state   *os.ProcessState
}

var (
	procsMu sync.Mutex
	procs   = map[*Proc]struct{}{}
)

// Start runs argv in the background in its own process group, with stdout
// and stderr appended to logDir/name.log.
func Start(logDir, name string, argv ...string) (*Proc, error) {
	return StartEnv(logDir, name, nil, argv...)
}

// StartEnv is Start with extra environment variables.
func StartEnv(logDir, name string, env []string, argv ...string) (*Proc, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	lp := filepath.Join(logDir, name+".log")
	lf, err := os.OpenFile(lp, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(lf, "=== %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, LogPath: lp, done: make(chan struct{})}
	procsMu.Lock()
	procs[p] = struct{}{}
	procsMu.Unlock()
	go func() {
		p.err = cmd.Wait()
		p.state = cmd.ProcessState
		lf.Close()
		procsMu.Lock()
		delete(procs, p)
		procsMu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process (not its group).
func (p *Proc) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// Wait waits up to timeout for the process to exit and returns its wait
// error (nil for exit status 0).
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%w: %s still running after %s", ErrTimeout, p.Name, timeout)
	}
}

// State returns the exit state once the process has exited.
func (p *Proc) State() *os.ProcessState { return p.state }

// Stop sends SIGTERM, waits up to grace, then kills the process group.
// It returns the wait error of a process that exited within grace.
func (p *Proc) Stop(grace time.Duration) error {
	if p.Exited() {
		return p.err
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
	}
	p.Kill()
	return fmt.Errorf("%w: %s ignored SIGTERM for %s", ErrTimeout, p.Name, grace)
}

// Kill sends SIGKILL to the process group and waits for the process.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// KillAll kills every process started by Start that is still running: the
// drivers call it on the way out, including after a signal.
func KillAll() {
	procsMu.Lock()
	ps := make([]*Proc, 0, len(procs))
	for p := range procs {
		ps = append(ps, p)
	}
	procsMu.Unlock()
	for _, p := range ps {
		p.Kill()
	}
}

// Result of a timed command.
type Result struct {
	Wall    time.Duration
	MaxRSS  int64         // peak resident set, KiB (getrusage ru_maxrss of the child)
	CPU     time.Duration // user + system time of the child
	Stdout  []byte
	Stderr  []byte
	ExitErr error
}

// Run runs argv to completion (at most timeout) and measures its wall time
// and peak RSS, as GNU time -v does (wait4 rusage). stdout is kept unless
// discard is true.
func Run(timeout time.Duration, discard bool, argv ...string) (Result, error) {
	return RunIn("", nil, timeout, discard, argv...)
}

// RunIn is Run with a working directory and extra environment.
func RunIn(dir string, env []string, timeout time.Duration, discard bool, argv ...string) (Result, error) {
	var out bytes.Buffer
	var w io.Writer = &out
	if discard {
		w = io.Discard
	}
	r, err := RunTo(dir, env, timeout, w, argv...)
	r.Stdout = out.Bytes()
	return r, err
}

// RunTo is Run with stdout going to w.
func RunTo(dir string, env []string, timeout time.Duration, w io.Writer, argv ...string) (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var errb bytes.Buffer
	cmd.Stdout = w
	cmd.Stderr = &errb
	t0 := time.Now()
	err := cmd.Run()
	r := Result{Wall: time.Since(t0), Stderr: errb.Bytes(), ExitErr: err}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			r.MaxRSS = ru.Maxrss
			r.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	if ctx.Err() != nil {
		return r, fmt.Errorf("%w: %s after %s", ErrTimeout, strings.Join(argv, " "), timeout)
	}
	if err != nil {
		return r, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, Tail(errb.Bytes(), 400))
	}
	return r, nil
}

// Tail returns the last n bytes of b as a one-line string.
func Tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", " | ")
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// MustFreePort is FreePort that panics: running out of ports is not a
// benchmark result.
func MustFreePort() int {
	p, err := FreePort()
	if err != nil {
		panic(err)
	}
	return p
}

// WaitDial waits until addr accepts a TCP connection, or p exits, or timeout.
func WaitDial(addr string, p *Proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited before listening on %s (see %s)", p.Name, addr, p.LogPath)
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%w: nothing listening on %s after %s", ErrTimeout, addr, timeout)
}

// SocketmapQuery sends one socketmap request on c and returns the reply
// text (without the netstring framing).
func SocketmapQuery(c net.Conn, br *bufio.Reader, mapName, key string) (string, error) {
	q := mapName + " " + key
	if _, err := fmt.Fprintf(c, "%d:%s,", len(q), q); err != nil {
		return "", err
	}
	return ReadNetstring(br, 100000)
}

// ReadNetstring reads one netstring of at most max bytes.
func ReadNetstring(br *bufio.Reader, max int) (string, error) {
	n := 0
	digits := 0
	for {
		b, err := br.ReadByte()
		if err != nil {
			return "", err
		}
		if b == ':' {
			break
		}
		if b < '0' || b > '9' || digits > 7 {
			return "", fmt.Errorf("bad netstring length byte %q", b)
		}
		n = n*10 + int(b-'0')
		digits++
	}
	if digits == 0 || n > max {
		return "", fmt.Errorf("bad netstring length %d", n)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(br, buf); err != nil {
		return "", err
	}
	if buf[n] != ',' {
		return "", errors.New("netstring without trailing comma")
	}
	return string(buf[:n]), nil
}

// ProcStatus returns a field of /proc/PID/status in KiB (VmRSS, VmHWM).
func ProcStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(l[len(field)+1:])
			if len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

// Median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// MinMax returns the smallest and largest of xs.
func MinMax(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	return slices.Min(xs), slices.Max(xs)
}

// Table is a Markdown table under construction.
type Table struct {
	Head []string
	Rows [][]string
}

// Add appends a row.
func (t *Table) Add(cells ...string) { t.Rows = append(t.Rows, cells) }

// String renders the table.
func (t *Table) String() string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(t.Head, " | ") + " |\n|")
	for range t.Head {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range t.Rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

// Int formats n with thousands separators.
func Int(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var out []byte
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// F formats x with prec decimals.
func F(x float64, prec int) string { return strconv.FormatFloat(x, 'f', prec, 64) }

// Machine describes the machine the figures were taken on.
func Machine(goBin string) []string {
	var facts []string
	cpu := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if _, v, ok := strings.Cut(l, ":"); ok {
					cpu = strings.TrimSpace(v)
				}
				break
			}
		}
	}
	facts = append(facts, fmt.Sprintf("CPU: %s, %d logical CPUs (nproc)", cpu, runtime.NumCPU()))
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		l, _, _ := strings.Cut(string(b), "\n")
		facts = append(facts, "Memory: "+strings.Join(strings.Fields(l)[1:], " ")+" total")
	}
	if out, err := exec.Command("uname", "-srm").Output(); err == nil {
		facts = append(facts, "Kernel: "+strings.TrimSpace(string(out)))
	}
	if b, err := os.ReadFile("/etc/debian_version"); err == nil {
		facts = append(facts, "Debian: "+strings.TrimSpace(string(b)))
	}
	if out, err := exec.Command(goBin, "version").Output(); err == nil {
		facts = append(facts, "Go: "+strings.TrimSpace(string(out)))
	}
	facts = append(facts, "Date: "+time.Now().UTC().Format("2006-01-02 15:04 MST"))
	if src := Source(); src != "" {
		facts = append(facts, "mailtls built from: "+src)
	}
	return facts
}

var (
	sourceOnce sync.Once
	source     string
)

// Source describes the working tree the binaries were built from: the
// commit and the files changed since, outside bench/ and the generated
// documents. The first call's answer is kept: call it when the run starts.
func Source() string {
	sourceOnce.Do(func() { source = readSource() })
	return source
}

func readSource() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	s := "commit " + strings.TrimSpace(string(out))
	st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	if err != nil {
		return s
	}
	var changed []string
	for _, l := range strings.Split(strings.TrimRight(string(st), "\n"), "\n") {
		if len(l) < 4 {
			continue
		}
		f := strings.TrimSpace(l[3:])
		if strings.HasPrefix(f, "bench/") || strings.HasSuffix(f, ".md") {
			continue
		}
		changed = append(changed, f)
	}
	if len(changed) > 0 {
		s += " plus uncommitted changes to " + strings.Join(changed, ", ")
	}
	return s
}

// LoadAvg returns the 1-minute load average.
func LoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// DpkgVersion returns the installed version of a Debian package, or "".
func DpkgVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// Foreign watches the CPU time used by processes that are not this one or
// its descendants, so that a report can say whether the machine was quiet.
// It samples /proc every interval; processes that start and end between two
// samples are not seen, so it can only under-count.
type Foreign struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	samples []float64 // CPUs busy with foreign work, per interval
	top     map[string]float64
}

// WatchForeign starts a Foreign.
func WatchForeign(interval time.Duration) *Foreign {
	f := &Foreign{stop: make(chan struct{}), done: make(chan struct{}), top: map[string]float64{}}
	go f.run(interval)
	return f
}

type procTimes struct {
	ppid  int
	ticks int64
	comm  string
}

func readProcs() map[int]procTimes {
	out := map[int]procTimes{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		lp, rp := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if lp < 0 || rp < lp {
			continue
		}
		f := strings.Fields(s[rp+1:])
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[pid] = procTimes{ppid: ppid, ticks: ut + st, comm: s[lp+1 : rp]}
	}
	return out
}

func (f *Foreign) run(interval time.Duration) {
	defer close(f.done)
	const hz = 100 // USER_HZ
	self := os.Getpid()
	prev := readProcs()
	t := time.NewTicker(interval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
		cur := readProcs()
		now := time.Now()
		mine := func(pid int) bool {
			for i := 0; i < 64 && pid > 1; i++ {
				if pid == self {
					return true
				}
				p, ok := cur[pid]
				if !ok {
					return false
				}
				pid = p.ppid
			}
			return false
		}
		var busy float64
		secs := now.Sub(last).Seconds()
		for pid, p := range cur {
			q, ok := prev[pid]
			if !ok || mine(pid) || p.ticks <= q.ticks {
				continue
			}
			c := float64(p.ticks-q.ticks) / hz / secs
			busy += c
			f.mu.Lock()
			f.top[p.comm] += c * secs
			f.mu.Unlock()
		}
		f.mu.Lock()
		f.samples = append(f.samples, busy)
		f.mu.Unlock()
		prev, last = cur, now
	}
}

// Stop ends the watch and summarises it: the mean and the largest number of
// CPUs busy with other processes' work, and the three biggest users.
func (f *Foreign) Stop() string {
	close(f.stop)
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.samples) == 0 {
		return "not measured"
	}
	var sum float64
	for _, x := range f.samples {
		sum += x
	}
	_, hi := MinMax(f.samples)
	type kv struct {
		k string
		v float64
	}
	var top []kv
	for k, v := range f.top {
		if v >= 1 {
			top = append(top, kv{k, v})
		}
	}
	slices.SortFunc(top, func(a, b kv) int {
		if a.v > b.v {
			return -1
		}
		if a.v < b.v {
			return 1
		}
		return 0
	})
	s := fmt.Sprintf("other processes used %.2f CPUs on average, %.2f at most (sampled every few seconds; short-lived processes are missed)", sum/float64(len(f.samples)), hi)
	if len(top) > 0 {
		var parts []string
		for i, x := range top {
			if i == 3 {
				break
			}
			parts = append(parts, fmt.Sprintf("%s %.0f CPU·s", x.k, x.v))
		}
		s += "; biggest: " + strings.Join(parts, ", ")
	}
	return s
}
