// Package postfix holds the files an operator installs beside Postfix. Its
// test checks that the systemd unit lets the daemon do its work: the unit
// passes `systemd-analyze verify`, and the real binary, run under strace
// with the unit's command line and doing the real work, makes no system
// call the unit's SystemCallFilter= forbids and nothing its other
// sandboxing lines forbid.
package postfix

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/testnet"
)

// The units in this directory and the commands they run, as an operator
// would install them: the unit's ExecStart plus the documented variants
// (mailtls.service comments: a unix socket with --unix-group, which needs
// chown; README.operators.md: --journal instead of --log on journald-only
// systems, which runs journalctl under the same sandbox).
var units = []struct {
	name, file string
	journal    bool
}{
	{"mail.log", "mailtls.service", false},
	{"journal", "mailtls.service", true},
}

var unixArgs = []string{"--unix", "/run/mailtls/policy.sock", "--unix-group", "postfix"}

// unit is the part of a [Service] section the test reads: every value of
// every key, in order.
type unit map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s:%d: not key=value: %q", path, n+1, line)
			}
			u[strings.TrimSpace(k)] = append(u[strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

func (u unit) one(t *testing.T, key string) string {
	t.Helper()
	if len(u[key]) != 1 {
		t.Fatalf("unit has %d %s= lines, want 1", len(u[key]), key)
	}
	return u[key][0]
}

// need finds a program the test cannot do without; CI must install it
// (.ci/deps), so its absence fails the test instead of skipping it.
func need(t *testing.T, prog, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		t.Fatalf("%s not found (apt-get install %s; .ci/deps installs it): %v", prog, pkg, err)
	}
	return p
}

var (
	buildOnce sync.Once
	binPath   string
	binErr    error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// buildMailtls builds the binary once for all tests, as make build does.
func buildMailtls(t *testing.T) string {
	t.Helper()
	gobin := need(t, "go", "golang")
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mailtls-unit-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "mailtls")
		cmd := exec.Command(gobin, "build", "-o", binPath, "./cmd/mailtls")
		cmd.Dir = filepath.Join("..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/mailtls: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// syscallGroups returns the installed systemd's own @group lists
// (`systemd-analyze syscall-filter`), groups not yet expanded.
func syscallGroups(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command(need(t, "systemd-analyze", "systemd"), "syscall-filter", "--no-pager").Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter: %v", err)
	}
	groups := map[string][]string{}
	cur := ""
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "@"):
			cur = strings.TrimSpace(line)
			groups[cur] = []string{}
		case strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#"):
			if strings.TrimSpace(line) == "" {
				cur = ""
			}
		case cur != "":
			groups[cur] = append(groups[cur], strings.TrimSpace(line))
		}
	}
	if len(groups["@system-service"]) == 0 || len(groups["@default"]) == 0 {
		t.Fatalf("systemd-analyze syscall-filter listed no @system-service or @default:\n%s", out)
	}
	return groups
}

func expand(t *testing.T, groups map[string][]string, name string, into map[string]bool, depth int) {
	t.Helper()
	if depth > 10 {
		t.Fatalf("syscall group %s nests too deep", name)
	}
	name, _, _ = strings.Cut(name, ":") // ~@privileged:EPERM
	if !strings.HasPrefix(name, "@") {
		into[name] = true
		return
	}
	members, ok := groups[name]
	if !ok {
		t.Fatalf("unit names syscall group %s, which this systemd does not know", name)
	}
	for _, m := range members {
		expand(t, groups, m, into, depth+1)
	}
}

// syscallFilter applies SystemCallFilter= lines as systemd does
// (systemd.exec(5)): the first line decides between an allow list and a
// deny list; later lines of the same kind add to it, of the other kind
// remove from it; an empty value resets. An allow list always includes
// @default, as systemd adds it. It returns whether name is allowed.
func syscallFilter(t *testing.T, groups map[string][]string, lines []string) func(string) bool {
	t.Helper()
	set := map[string]bool{}
	mode := "" // "allow" or "deny"
	for _, l := range lines {
		if l == "" {
			set, mode = map[string]bool{}, ""
			continue
		}
		deny := strings.HasPrefix(l, "~")
		names := map[string]bool{}
		for _, n := range strings.Fields(strings.TrimPrefix(l, "~")) {
			expand(t, groups, n, names, 0)
		}
		if mode == "" {
			mode = "allow"
			if deny {
				mode = "deny"
			} else {
				expand(t, groups, "@default", set, 0)
			}
		}
		add := deny == (mode == "deny")
		for n := range names {
			if add {
				set[n] = true
			} else {
				delete(set, n)
			}
		}
	}
	if mode == "" {
		t.Fatal("unit has no SystemCallFilter= line")
	}
	return func(name string) bool { return set[name] == (mode == "allow") }
}

func TestUnitVerify(t *testing.T) {
	analyze := need(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	bin := buildMailtls(t)
	for _, uc := range units {
		u := readUnit(t, uc.file)
		exec0 := strings.Fields(u.one(t, "ExecStart"))[0]
		b, err := os.ReadFile(uc.file)
		if err != nil {
			t.Fatal(err)
		}
		// verify needs the ExecStart binary: point it at the one just built.
		copyPath := filepath.Join(dir, uc.file)
		if err := os.WriteFile(copyPath, bytes.ReplaceAll(b, []byte(exec0), []byte(bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", uc.file, err, out)
		}
	}
}

// straceCall is one system call from `strace -f` output.
type straceCall struct {
	name, args, line string
}

// A resumed call is counted at its start; strace writes "???" for the name
// of one resumed after its thread was killed at exit.
var (
	straceLine = regexp.MustCompile(`^\d+ +(?:<\.\.\. ([a-z0-9_]+|\?\?\?) resumed>|([a-z0-9_]+)\()(.*)$`)
	// A call strace could not name, of a thread torn down in it:
	// "???( <unfinished ...>", or, when no other thread's line came
	// between, the whole call at once with no result, "???()   = ?".
	straceUndecoded = regexp.MustCompile(`^(\d+) +\?\?\?\((?: <unfinished \.\.\.>|\) *= \?)$`)
	straceExit      = regexp.MustCompile(`^(\d+) +\+\+\+ (?:exited|killed) `)
	// strace may also print the undecoded call's end, with no result ("= ?"):
	// it never returned either.
	straceUndecodedEnd = regexp.MustCompile(`^(\d+) +<\.\.\. \?\?\? resumed> *\)? *= \?$`)
)

func readStrace(t *testing.T, path string) []straceCall {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	calls, problems, err := parseStrace(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	return calls
}

// parseStrace reads strace -f output: the calls, and each line that cannot
// be checked against the sandbox.
func parseStrace(r io.Reader) (calls []straceCall, problems []string, err error) {
	// undecoded holds the threads whose system call strace could not name
	// ("???( <unfinished ...>", or "???() = ?"): that happens when exit_group tears the
	// thread down while it is in a call, so the thread's next line must be
	// its exit, and the call never completed.
	undecoded := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := straceUndecoded.FindStringSubmatch(line); m != nil {
			undecoded[m[1]] = line
			continue
		}
		if m := straceUndecodedEnd.FindStringSubmatch(line); m != nil && undecoded[m[1]] != "" {
			continue // still torn down: its exit comes next
		}
		if m := straceExit.FindStringSubmatch(line); m != nil {
			delete(undecoded, m[1])
			continue
		}
		if pid, _, _ := strings.Cut(line, " "); undecoded[pid] != "" {
			problems = append(problems, fmt.Sprintf("strace could not name a call, and the thread went on: %q, then %q", undecoded[pid], line))
			delete(undecoded, pid)
		}
		if strings.Contains(line, " --- ") || strings.Contains(line, " +++ ") {
			continue // signals, exits
		}
		m := straceLine.FindStringSubmatch(line)
		if m == nil {
			problems = append(problems, fmt.Sprintf("strace line not understood: %q", line))
			continue
		}
		if m[1] != "" {
			continue // counted at its start
		}
		calls = append(calls, straceCall{m[2], m[3], line})
	}
	for _, line := range undecoded {
		problems = append(problems, fmt.Sprintf("strace could not name a call, and the thread did not exit: %q", line))
	}
	slices.Sort(problems)
	return calls, problems, sc.Err()
}

// daemon is mailtls running under strace.
type daemon struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr bytes.Buffer
}

// waitLog waits for a log line containing s and returns it.
func (d *daemon) waitLog(t *testing.T, s string) string {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-d.lines:
			if !ok {
				t.Fatalf("mailtls exited before logging %q:\n%s", s, d.stderr.String())
			}
			if strings.Contains(l, s) {
				return l
			}
		case <-timeout:
			t.Fatalf("no log line %q within 60s:\n%s", s, d.stderr.String())
		}
	}
}

// tracee is the pid of strace's child: the process in /proc whose parent
// is strace.
func tracee(t *testing.T, strace int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(strace) {
			return pid
		}
	}
	t.Fatalf("no child of strace %d", strace)
	return 0
}

func postmapQ(t *testing.T, postmap, key, table, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, postmap, "-q", key, table).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != want {
		t.Errorf("postmap -q %s %s: %v, %q; want %q", key, table, err, out, want)
	}
}

func TestUnitSandboxAllowsDaemon(t *testing.T) {
	straceBin := need(t, "strace", "strace")
	postmap := need(t, "postmap", "postfix")
	groups := syscallGroups(t)
	grp, err := user.LookupGroup("postfix")
	if err != nil {
		t.Fatalf("group postfix (the group --unix-group gives the socket to; installed with Postfix): %v", err)
	}
	for _, uc := range units {
		t.Run(uc.name, func(t *testing.T) {
			u := readUnit(t, uc.file)
			allowed := syscallFilter(t, groups, u["SystemCallFilter"])
			for _, n := range []string{"fchownat", "openat", "bind", "accept4"} {
				if !allowed(n) {
					t.Errorf("%s: the filter forbids %s", uc.file, n)
				}
			}
			// The filter as read still forbids what the unit means to.
			for _, n := range []string{"setuid", "setgroups", "reboot", "init_module", "mount", "settimeofday", "swapon"} {
				if allowed(n) {
					t.Errorf("%s: the filter allows %s", uc.file, n)
				}
			}
			checkUnitRun(t, u, uc.journal, allowed, straceBin, postmap, grp)
		})
	}
}

// checkUnitRun runs the unit's ExecStart with a unix socket under strace,
// every path moved under a temporary root: a lookup over each listener with
// Postfix's own client, a delivery in the log for the follower (or the real
// journalctl with journal), SIGHUP, then SIGTERM. Then it checks what the
// processes did against the unit.
func checkUnitRun(t *testing.T, u unit, journal bool, allowed func(string) bool, straceBin, postmap string, grp *user.Group) {
	root := t.TempDir()
	bin := buildMailtls(t)
	under := func(p string) string { return filepath.Join(root, p) }

	args := append(strings.Fields(u.one(t, "ExecStart"))[1:], unixArgs...)
	if journal {
		need(t, "journalctl", "systemd")
		i := slices.Index(args, "--log")
		if i < 0 || i+1 >= len(args) {
			t.Fatalf("ExecStart has no --log to replace by --journal: %v", args)
		}
		args = slices.Replace(args, i, i+2, "--journal")
	}
	paths := map[string]string{}
	for i, a := range args {
		if strings.HasPrefix(a, "/") {
			args[i] = under(a)
			paths[a] = args[i]
		}
	}
	// Loopback ports of our own instead of the fixed 8470/8471/8472 (the
	// HTTP listener stays on, so its syscalls are checked too: a mailtls
	// running on the machine had 8472 and failed this test).
	// The unit's default sources query DNS: a loopback resolver of the
	// test's own (destinations publish nothing), so that the sandbox is
	// checked with the DNS sockets the daemon opens, and no query leaves
	// the machine.
	args = append(args, "--socketmap", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--config", os.DevNull, "--log-level", "debug",
		"--resolver", testnet.StartDNS(t, testnet.NewZone()))
	for _, d := range []string{"/var/log", "/run", "/var/lib"} {
		if err := os.MkdirAll(under(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// What systemd creates before starting the service.
	for _, d := range u["StateDirectory"] {
		os.MkdirAll(under("/var/lib/"+d), 0o750)
	}
	for _, d := range u["RuntimeDirectory"] {
		os.MkdirAll(under("/run/"+d), 0o755)
	}
	logPath := paths["/var/log/mail.log"]
	if logPath == "" && !journal {
		t.Fatalf("ExecStart does not follow /var/log/mail.log: %v", args)
	}
	const delivery = "Nov 28 18:20:05 myhostname postfix/smtp[8020]: Trusted TLS connection established to mx.unit.test[192.0.2.7]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n" +
		"Nov 28 18:20:05 myhostname postfix/smtp[8020]: 7C41E1C0D9: to=<bob@unit.test>, relay=mx.unit.test[192.0.2.7]:25, delay=4.1, delays=4/0.01/0.06/0.03, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 8D52F1C0DA)\n"
	if !journal {
		if err := os.WriteFile(logPath, []byte(delivery), 0o640); err != nil {
			t.Fatal(err)
		}
	}

	traceFile := filepath.Join(t.TempDir(), "strace.out")
	d := &daemon{lines: make(chan string, 100)}
	d.cmd = exec.Command(straceBin, append([]string{"-f", "-qq", "-e", "trace=all", "-o", traceFile, "--", bin}, args...)...)
	// The environment systemd gives a system service (systemd.exec(5),
	// "Environment variables in spawned processes"), not ours.
	d.cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", "LANG=C.UTF-8"}
	pr, pw := io.Pipe()
	d.cmd.Stderr = io.MultiWriter(pw, &d.stderr)
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			d.lines <- sc.Text()
		}
		close(d.lines)
	}()
	exited := make(chan error, 1)
	go func() { err := d.cmd.Wait(); pw.Close(); exited <- err }()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-exited
	})

	started := d.waitLog(t, "mailtls run started")
	if journal {
		d.waitLog(t, "journalctl started")
	} else {
		d.waitLog(t, "following log file from its start")
	}
	pid := tracee(t, d.cmd.Process.Pid)
	sockPath := paths["/run/mailtls/policy.sock"]
	if sockPath == "" {
		t.Fatalf("no --unix socket in %v", args)
	}
	sm := regexp.MustCompile(`socketmap=tcp:(127\.0\.0\.1:\d+)`).FindStringSubmatch(started)
	tt := regexp.MustCompile(`tcp_table=tcp:(127\.0\.0\.1:\d+)`).FindStringSubmatch(started)
	if sm == nil || tt == nil || !strings.Contains(started, "socketmap=unix:"+sockPath) || !regexp.MustCompile(`http=tcp:127\.0\.0\.1:\d+`).MatchString(started) {
		t.Fatalf("listeners not in %q", started)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(sockPath, &st); err != nil || strconv.Itoa(int(st.Gid)) != grp.Gid || st.Mode&0o777 != 0o660 {
		t.Errorf("socket %s: gid %d mode %o (%v), want group postfix (%s) mode 660", sockPath, st.Gid, st.Mode&0o777, err, grp.Gid)
	}
	postmapQ(t, postmap, "example.com", "socketmap:unix:"+sockPath+":tlspolicy", "may")
	postmapQ(t, postmap, "example.com", "socketmap:inet:"+sm[1]+":tlspolicy", "may")
	postmapQ(t, postmap, "example.com", "tcp:"+tt[1], "may")
	if !journal {
		// Wait until the follower has committed the delivery, so that the
		// check after SIGTERM does not depend on how fast it read the log.
		deadline := time.Now().Add(60 * time.Second)
		for {
			out, _ := exec.Command(bin, "deliveries", "--db", paths["/var/lib/mailtls/mailtls.db"], "--format", "jsonl").CombinedOutput()
			if strings.Contains(string(out), `"queue_id":"7C41E1C0D9"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the follower did not record the delivery within 60s:\n%s\n%s", out, d.stderr.String())
			}
			time.Sleep(100 * time.Millisecond) // polling an observable result, with a deadline
		}
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, "SIGHUP: reopening log")
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("mailtls under strace: %v\n%s", err, d.stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("mailtls did not stop within 60s of SIGTERM:\n%s", d.stderr.String())
	}

	// The follower did its work too: the delivery is in the database.
	if !journal {
		out, err := exec.Command(bin, "deliveries", "--db", paths["/var/lib/mailtls/mailtls.db"], "--format", "jsonl").CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"queue_id":"7C41E1C0D9"`) {
			t.Errorf("deliveries after the run: %v\n%s", err, out)
		}
	}

	calls := readStrace(t, traceFile)
	if len(calls) < 100 {
		t.Fatalf("only %d system calls traced", len(calls))
	}
	if journal && !slices.ContainsFunc(calls, func(c straceCall) bool {
		return c.name == "execve" && strings.Contains(c.args, "journalctl")
	}) {
		t.Error("journalctl was not run")
	}
	checkCalls(t, u, calls, allowed, root)
}

var (
	sockFamily = regexp.MustCompile(`^(AF_[A-Z0-9]+)`)
	pathArg    = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)
	inetAddr   = regexp.MustCompile(`inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"`)
)

// checkCalls holds every traced call against the unit's sandbox.
func checkCalls(t *testing.T, u unit, calls []straceCall, allowed func(string) bool, root string) {
	t.Helper()
	families := strings.Fields(strings.Join(u["RestrictAddressFamilies"], " "))
	writable := []string{}
	for _, d := range u["StateDirectory"] {
		writable = append(writable, filepath.Join(root, "/var/lib", d))
	}
	for _, d := range u["RuntimeDirectory"] {
		writable = append(writable, filepath.Join(root, "/run", d))
	}
	for _, p := range strings.Fields(strings.Join(u["ReadWritePaths"], " ")) {
		writable = append(writable, filepath.Join(root, strings.TrimPrefix(p, "-")))
	}
	if u.one(t, "ProtectSystem") != "strict" {
		t.Errorf("ProtectSystem=%s: the checks below assume strict", u.one(t, "ProtectSystem"))
	}
	inside := func(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	mayWrite := func(p string) bool {
		for _, w := range writable {
			if inside(p, w) {
				return true
			}
		}
		// Outside the moved root: what the sandbox leaves writable.
		return !inside(p, root) && (p == os.DevNull || inside(p, "/proc/self") || inside(p, "/proc/thread-self") ||
			slices.Contains(u["PrivateTmp"], "yes") && (inside(p, "/tmp") || inside(p, "/var/tmp")))
	}
	seen := map[string]int{}
	bad := map[string]bool{}
	report := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		if !bad[msg] {
			bad[msg] = true
			t.Error(msg)
		}
	}
	for _, c := range calls {
		seen[c.name]++
		if !allowed(c.name) {
			report("system call %s is forbidden by SystemCallFilter=%q: %s", c.name, u["SystemCallFilter"], c.line)
		}
		switch c.name {
		case "socket", "socketpair":
			if f := sockFamily.FindString(c.args); f != "" && !slices.Contains(families, f) {
				report("%s(%s...) is forbidden by RestrictAddressFamilies=%s: %s", c.name, f, strings.Join(families, " "), c.line)
			}
		case "connect", "bind":
			if !slices.Contains(u["IPAddressDeny"], "any") {
				break
			}
			for _, m := range inetAddr.FindAllStringSubmatch(c.args, -1) {
				// Go binds 127.0.0.1 on a dual-stack socket as ::ffff:127.0.0.1;
				// the packets are IPv4 loopback.
				if a := strings.TrimPrefix(m[1]+m[2], "::ffff:"); a != "::1" && !strings.HasPrefix(a, "127.") {
					report("%s to %s, outside IPAddressAllow=%s: %s", c.name, a, strings.Join(u["IPAddressAllow"], " "), c.line)
				}
			}
		case "mmap", "mprotect", "pkey_mprotect":
			if slices.Contains(u["MemoryDenyWriteExecute"], "yes") && strings.Contains(c.args, "PROT_WRITE") && strings.Contains(c.args, "PROT_EXEC") {
				report("writable and executable memory, forbidden by MemoryDenyWriteExecute=yes: %s", c.line)
			}
		}
		if p := writePath(c); p != "" && strings.HasPrefix(p, "/") && !mayWrite(p) {
			report("%s writes %s, read-only under ProtectSystem=strict (StateDirectory=, RuntimeDirectory=, ReadWritePaths=): %s", c.name, p, c.line)
		}
		if p := firstPath(c); inside(p, "/home") || inside(p, "/root") || inside(p, "/run/user") {
			report("%s uses %s, hidden by ProtectHome=yes: %s", c.name, p, c.line)
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	t.Logf("%d system calls traced, %d distinct: %s", len(calls), len(names), strings.Join(names, " "))
	// The work the test meant to trace did happen.
	for _, n := range []string{"fchownat", "bind", "accept4", "openat", "pwrite64"} {
		if seen[n] == 0 {
			t.Errorf("no %s traced: the run did not do what the test wanted to check", n)
		}
	}
}

func firstPath(c straceCall) string {
	m := pathArg.FindStringSubmatch(c.args)
	if m == nil {
		return ""
	}
	return m[1]
}

// writePath returns the path a call creates or modifies, or "".
func writePath(c straceCall) string {
	switch c.name {
	case "open", "openat", "openat2", "creat":
		if c.name != "creat" && !regexp.MustCompile(`O_WRONLY|O_RDWR|O_CREAT|O_TRUNC`).MatchString(c.args) {
			return ""
		}
	case "mkdir", "mkdirat", "unlink", "unlinkat", "rmdir", "rename", "renameat", "renameat2", "link", "linkat",
		"symlink", "symlinkat", "chmod", "fchmodat", "fchmodat2", "chown", "lchown", "fchownat", "truncate", "mknod", "mknodat", "utimensat":
	case "bind":
		if m := regexp.MustCompile(`sun_path="([^"]+)"`).FindStringSubmatch(c.args); m != nil {
			return m[1]
		}
		return ""
	default:
		return ""
	}
	return firstPath(c)
}

func TestParseStrace(t *testing.T) {
	for _, tc := range []struct {
		name     string
		trace    string
		calls    []string
		problems int
	}{
		{"calls", "10 openat(AT_FDCWD, \"/x\", O_RDONLY) = 3\n10 read(3 <unfinished ...>\n11 futex(0x1, FUTEX_WAKE) = 1\n10 <... read resumed>\"a\", 1) = 1\n", []string{"openat", "read", "futex"}, 0},
		{"torn down in a call", "10 read(3, \"a\", 1) = 1\n11 ???( <unfinished ...>\n10 exit_group(0) = ?\n11 +++ exited with 0 +++\n10 +++ exited with 0 +++\n", []string{"read", "exit_group"}, 0},
		{"undecoded, then went on", "11 ???( <unfinished ...>\n11 <... ??? resumed>) = 0\n11 +++ exited with 0 +++\n", nil, 1},
		{"torn down, end printed", "11 ???( <unfinished ...>\n11 <... ??? resumed> = ?\n11 +++ exited with 0 +++\n", nil, 0},
		{"torn down, end printed, went on", "11 ???( <unfinished ...>\n11 <... ??? resumed> = ?\n11 read(3, \"a\", 1) = 1\n", []string{"read"}, 1},
		{"undecoded, never exited", "11 ???( <unfinished ...>\n", nil, 1},
		{"torn down, whole call printed", "10 read(3, \"a\", 1) = 1\n11 ???()                             = ?\n11 +++ exited with 0 +++\n", []string{"read"}, 0},
		{"whole undecoded call printed, went on", "11 ???() = ?\n11 read(3, \"a\", 1) = 1\n", []string{"read"}, 1},
		{"whole undecoded call printed, never exited", "11 ???() = ?\n", nil, 1},
		{"garbage", "11 ???(x) = 0\n", nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, problems, err := parseStrace(strings.NewReader(tc.trace))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, c := range calls {
				names = append(names, c.name)
			}
			if !slices.Equal(names, tc.calls) || len(problems) != tc.problems {
				t.Errorf("calls %v, problems %q; want calls %v and %d problems", names, problems, tc.calls, tc.problems)
			}
		})
	}
}
