//go:build linux

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// baseDir holds the slots. It must be traversable by user postfix
	// (t.TempDir is mode 0700), and the config directories must have
	// fixed names for alternate_config_directories.
	baseDir  = "/tmp/mailtls-e2e"
	numSlots = 8
	// defaultMainCF is read by every Postfix command before any -c.
	defaultMainCF = "/etc/postfix/main.cf"
)

// requiredTools lists what the harness runs, with the fix for each.
var requiredTools = []struct{ name, fix string }{
	{"postfix", "postfix not installed: run .ci/run or apt-get install postfix"},
	{"postconf", "postconf not installed: run .ci/run or apt-get install postfix"},
	{"postmap", "postmap not installed: run .ci/run or apt-get install postfix"},
	{"postqueue", "postqueue not installed: run .ci/run or apt-get install postfix"},
	{"postsuper", "postsuper not installed: run .ci/run or apt-get install postfix"},
	{"smtp-sink", "smtp-sink not installed: run .ci/run or apt-get install postfix"},
	{"swaks", "swaks not installed: run .ci/run or apt-get install swaks"},
	{"unshare", "unshare not installed: apt-get install util-linux"},
	{"mount", "mount not installed: apt-get install mount"},
	{"sh", "sh not found"},
}

// toolSearchPath is $PATH plus the sbin directories a non-login shell may
// lack.
func toolSearchPath() []string {
	dirs := filepath.SplitList(os.Getenv("PATH"))
	return append(dirs, "/usr/sbin", "/sbin", "/usr/bin", "/bin")
}

// findTools resolves every required tool in dirs, or names all that are
// missing and how to get them.
func findTools(dirs []string) (map[string]string, error) {
	found := make(map[string]string)
	var missing []string
	for _, tool := range requiredTools {
		for _, d := range dirs {
			if d == "" {
				continue
			}
			path := filepath.Join(d, tool.name)
			if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				found[tool.name] = path
				break
			}
		}
		if found[tool.name] == "" {
			missing = append(missing, tool.fix)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("e2e: %s", strings.Join(missing, "; "))
	}
	return found, nil
}

// cleanEnv is the environment for Postfix commands: ours without
// MAIL_CONFIG, which would override -c.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MAIL_CONFIG=") {
			env = append(env, kv)
		}
	}
	return env
}

func slotConfDir(slot int) string {
	return filepath.Join(baseDir, fmt.Sprintf("slot%d", slot), "etc")
}

// acquireSlot takes the first free slot with flock(2). The lock belongs to
// the open file, so it is released when the file is closed or the process
// dies, and two instances in one process get different slots.
func acquireSlot(ctx context.Context) (int, *os.File, error) {
	if err := os.MkdirAll(baseDir, 0o755); err != nil {
		return 0, nil, fmt.Errorf("e2e: %w", err)
	}
	if err := os.Chmod(baseDir, 0o755); err != nil {
		return 0, nil, fmt.Errorf("e2e: %w", err)
	}
	var slot int
	var lock *os.File
	err := poll(ctx, func() (bool, error) {
		for s := range numSlots {
			f, err := os.OpenFile(filepath.Join(baseDir, fmt.Sprintf("slot%d.lock", s)), os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				return false, fmt.Errorf("e2e: slot lock: %w", err)
			}
			if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
				slot, lock = s, f
				return true, nil
			}
			f.Close()
		}
		return false, nil
	}, func() string { return fmt.Sprintf("all %d Postfix slots in %s are busy", numSlots, baseDir) })
	return slot, lock, err
}

// killStale stops whatever a previous, killed test binary left in this
// slot, and recreates the slot directory.
func (p *Postfix) killStale() error {
	if pids := instancePIDs(p.conf); len(pids) > 0 {
		p.t.Logf("e2e: slot %d: stopping %d stale Postfix processes", p.slot, len(pids))
		_, _, _ = p.run(30*time.Second, "postfix", "-c", p.conf, "abort")
		for _, pid := range instancePIDs(p.conf) {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		if err := killInstance(p.conf, 3*time.Second); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(p.root); err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	pf, err := user.Lookup("postfix")
	if err != nil {
		return fmt.Errorf("e2e: user postfix: %w (apt-get install postfix)", err)
	}
	uid, _ := strconv.Atoi(pf.Uid)
	gid, _ := strconv.Atoi(pf.Gid)
	for _, d := range []string{p.conf, p.queue, filepath.Join(p.root, "data"), filepath.Dir(p.logPath)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("e2e: %w", err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return fmt.Errorf("e2e: %w", err)
		}
	}
	// master: "open lock file ... Permission denied" unless postfix owns it.
	if err := os.Chown(filepath.Join(p.root, "data"), uid, gid); err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	return nil
}

// markerEnv tags the processes the harness starts itself (smtp-sink),
// which, unlike Postfix daemons, carry no MAIL_CONFIG.
const markerEnv = "MAILTLS_E2E_INSTANCE"

// instancePIDs finds the processes of the instance whose config directory
// is conf: the master exports MAIL_CONFIG to every child, and smtp-sink
// carries markerEnv.
func instancePIDs(conf string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := []byte("MAIL_CONFIG=" + conf)
	mark := []byte(markerEnv + "=" + conf)
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, want) || bytes.Equal(kv, mark) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// killInstance waits up to grace for the instance's processes to exit,
// then kills the remaining ones by pid and checks that they are gone.
func killInstance(conf string, grace time.Duration) error {
	gone := func(d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return poll(ctx, func() (bool, error) { return len(instancePIDs(conf)) == 0, nil },
			func() string {
				return fmt.Sprintf("Postfix processes for %s still running: %v", conf, instancePIDs(conf))
			})
	}
	if gone(grace) == nil {
		return nil
	}
	for _, pid := range instancePIDs(conf) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return gone(5 * time.Second)
}

// ensureDefaultMainCF makes sure /etc/postfix/main.cf exists, parses, and
// lists every slot's config directory in alternate_config_directories
// (compared with strcmp by Postfix: no prefixes, no globs). An existing
// file is only changed by adding the missing directories.
func ensureDefaultMainCF(ctx context.Context, postconf string) error {
	lock, err := os.OpenFile(filepath.Join(baseDir, "global.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	var dirs []string
	for s := range numSlots {
		dirs = append(dirs, slotConfDir(s))
	}
	if _, err := os.Stat(defaultMainCF); errors.Is(err, os.ErrNotExist) {
		body := "# Created by the mailtls e2e test harness (github.com/mailtls/mailtls/e2e):\n" +
			"# Postfix commands need a default main.cf that parses, and `postfix -c DIR`\n" +
			"# needs DIR listed here.\n" +
			"compatibility_level = 3.6\n" +
			"alternate_config_directories = " + strings.Join(dirs, ", ") + "\n"
		if err := os.MkdirAll(filepath.Dir(defaultMainCF), 0o755); err != nil {
			return fmt.Errorf("e2e: %w", err)
		}
		if err := os.WriteFile(defaultMainCF, []byte(body), 0o644); err != nil {
			return fmt.Errorf("e2e: create %s: %w", defaultMainCF, err)
		}
	}
	run := func(args ...string) (string, error) {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(c, postconf, append([]string{"-c", filepath.Dir(defaultMainCF)}, args...)...)
		cmd.Env = cleanEnv()
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("e2e: postconf %s on %s: %w: %s", strings.Join(args, " "), defaultMainCF, err, strings.TrimSpace(errOut.String()))
		}
		return out.String(), nil
	}
	cur, err := run("-h", "alternate_config_directories")
	if err != nil {
		return err
	}
	have := make(map[string]bool)
	list := strings.FieldsFunc(cur, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
	for _, d := range list {
		have[d] = true
	}
	add := false
	for _, d := range dirs {
		if !have[d] {
			list = append(list, d)
			add = true
		}
	}
	if add {
		if _, err := run("-e", "alternate_config_directories="+strings.Join(list, ", ")); err != nil {
			return err
		}
	}
	return nil
}

// checkAddrsFree fails early, and clearly, when another process already
// listens on one of the slot's addresses.
func (p *Postfix) checkAddrsFree() error {
	addrs := []string{p.SubmitAddr()}
	for _, r := range []Receiver{ReceiverTLS, ReceiverPlain, ReceiverTLS1, ReceiverExpired, ReceiverUntrusted} {
		addrs = append(addrs, net.JoinHostPort(p.Addr(r), "25"))
	}
	addrs = append(addrs, net.JoinHostPort(p.Addr(ReceiverLMTP), "24"), p.DNSAddr())
	for _, a := range addrs {
		ln, err := net.Listen("tcp4", a)
		if err != nil {
			return fmt.Errorf("e2e: slot %d: %s is not free (see ss -ltnp): %w", p.slot, a, err)
		}
		ln.Close()
	}
	return nil
}

type param struct{ name, value string }

func (p *Postfix) mainCF(cfg Config) []param {
	ps := []param{
		{"compatibility_level", "3.6"},
		{"queue_directory", p.queue},
		{"data_directory", filepath.Join(p.root, "data")},
		// postlogd, not syslog: there may be no syslog daemon.
		{"maillog_file", p.logPath},
		{"maillog_file_prefixes", filepath.Dir(p.logPath)},
		{"myhostname", "sender.e2e.test"},
		{"mydomain", "e2e.test"},
		{"myorigin", "$myhostname"},
		{"mydestination", ""},
		{"relay_domains", ""},
		{"local_recipient_maps", ""},
		{"alias_maps", ""},
		{"alias_database", ""},
		{"biff", "no"},
		// With an explicit list master rejects the 127.0.N.x addresses.
		{"inet_interfaces", "all"},
		{"inet_protocols", "ipv4"},
		{"mynetworks", "127.0.0.0/8"},
		{"smtpd_relay_restrictions", "permit_mynetworks, reject_unauth_destination"},
		// Resolve through the private /etc/hosts; the policy lookup key is
		// then the plain recipient domain, as in production.
		{"smtp_host_lookup", "native"},
		{"smtp_dns_support_level", "disabled"},
		{"lmtp_host_lookup", "native"},
		{"lmtp_dns_support_level", "disabled"},
		{"smtp_tls_loglevel", "1"},
		{"smtp_tls_security_level", "may"},
		{"smtp_tls_policy_maps", cfg.PolicyMaps},
		{"smtp_tls_connection_reuse", yesNo(cfg.ConnectionReuse)},
		{"smtpd_tls_cert_file", "$config_directory/receiver.pem"},
		{"smtpd_tls_key_file", "$config_directory/receiver.key"},
		{"smtpd_tls_security_level", "none"}, // receivers override
		{"transport_maps", "texthash:$config_directory/transport"},
		{"minimal_backoff_time", "2s"},
		{"maximal_backoff_time", "4s"},
		{"queue_run_delay", "2s"},
	}
	if cfg.TrustTestCA {
		ps = append(ps, param{"smtp_tls_CAfile", "$config_directory/ca.pem"})
	}
	if cfg.DNS != nil {
		for i := range ps {
			switch ps[i].name {
			case "smtp_host_lookup":
				ps[i].value = "dns"
			case "smtp_dns_support_level":
				ps[i].value = "dnssec"
			}
		}
	}
	for _, k := range sortedKeys(cfg.Main) {
		replaced := false
		for i := range ps {
			if ps[i].name == k {
				ps[i].value, replaced = cfg.Main[k], true
			}
		}
		if !replaced {
			ps = append(ps, param{k, cfg.Main[k]})
		}
	}
	return ps
}

// masterCF has every service with chroot = n, so that daemons reach files
// and sockets outside the queue directory.
func (p *Postfix) masterCF() string {
	rcv := func(r Receiver, name string, opts ...string) string {
		return fmt.Sprintf("%s:25 inet n - n - - smtpd -o myhostname=%s -o content_filter=discard: %s\n",
			p.Addr(r), name, strings.Join(opts, " "))
	}
	var b strings.Builder
	b.WriteString("# Written by the mailtls e2e harness.\n")
	fmt.Fprintf(&b, "%s inet n - n - - smtpd\n", p.SubmitAddr())
	b.WriteString(rcv(ReceiverTLS, "mx.tls.test", "-o smtpd_tls_security_level=may"))
	b.WriteString(rcv(ReceiverPlain, "mx.plain.test", "-o smtpd_tls_security_level=none"))
	// OpenSSL 3 allows TLS 1.0 only at security level 0.
	b.WriteString(rcv(ReceiverTLS1, "mx.tls1.test", "-o smtpd_tls_security_level=may",
		"-o smtpd_tls_protocols=<=TLSv1", "-o smtpd_tls_mandatory_protocols=<=TLSv1",
		"-o tls_medium_cipherlist=DEFAULT@SECLEVEL=0"))
	b.WriteString(rcv(ReceiverExpired, "mx.expired.test", "-o smtpd_tls_security_level=may",
		"-o smtpd_tls_cert_file=$config_directory/expired.pem"))
	b.WriteString(rcv(ReceiverUntrusted, "mx.untrusted.test", "-o smtpd_tls_security_level=may",
		"-o smtpd_tls_cert_file=$config_directory/untrusted.pem"))
	b.WriteString(`pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
smtp-out  unix  -       -       n       -       -       smtp -o syslog_name=postfix-out
lmtp      unix  -       -       n       -       -       lmtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsproxy  unix  -       -       n       -       0       tlsproxy
`)
	return b.String()
}

func (p *Postfix) hostsFile(cfg Config) (string, error) {
	hosts := DefaultHosts()
	for k, v := range cfg.Hosts {
		hosts[k] = v
	}
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n")
	for _, name := range sortedKeys(hosts) {
		v := hosts[name]
		ip := net.ParseIP(v)
		if ip == nil {
			o, ok := hostOctet[Receiver(v)]
			if !ok {
				return "", fmt.Errorf("e2e: Config.Hosts[%q] = %q: want an IP address or a receiver (tls, plain, tls1, lmtp, expired, untrusted)", name, v)
			}
			ip = net.ParseIP(fmt.Sprintf("%s%d", p.netPfx, o))
		}
		fmt.Fprintf(&b, "%s\t%s\n", ip, name)
	}
	return b.String(), nil
}

// resolvConf is the private /etc/resolv.conf of an instance with
// Config.DNS: its server only, and trust-ad, without which glibc (>= 2.31)
// clears the AD bit that Postfix's DANE needs.
func (p *Postfix) resolvConf() string {
	host, _, _ := net.SplitHostPort(p.DNSAddr())
	return "# Written by the mailtls e2e harness (Config.DNS).\nnameserver " + host + "\noptions trust-ad\n"
}

func (p *Postfix) writeConfig(cfg Config) error {
	certs, err := testCerts()
	if err != nil {
		return err
	}
	hosts, err := p.hostsFile(cfg)
	if err != nil {
		return err
	}
	transports := DefaultTransports()
	for k, v := range cfg.Transports {
		transports[k] = v
	}
	var tr strings.Builder
	for _, k := range sortedKeys(transports) {
		fmt.Fprintf(&tr, "%s\t%s\n", k, transports[k])
	}
	var main strings.Builder
	main.WriteString("# Written by the mailtls e2e harness.\n")
	for _, kv := range p.mainCF(cfg) {
		fmt.Fprintf(&main, "%s = %s\n", kv.name, kv.value)
	}
	files := map[string]string{
		"main.cf":       main.String(),
		"master.cf":     p.masterCF(),
		"transport":     tr.String(),
		"hosts":         hosts,
		"ca.pem":        string(certs.caPEM),
		"receiver.pem":  string(certs.chainPEM),
		"expired.pem":   string(certs.expiredPEM),
		"untrusted.pem": string(certs.untrustedPEM),
		"resolv.conf":   p.resolvConf(),
	}
	for k, v := range cfg.Files {
		if k != filepath.Base(k) || files[k] != "" {
			return fmt.Errorf("e2e: Config.Files[%q]: want a plain file name other than %v", k, sortedKeys(files))
		}
		files[k] = v
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(p.conf, name), []byte(body), 0o644); err != nil {
			return fmt.Errorf("e2e: %w", err)
		}
	}
	// smtpd reads the key as root, before dropping privileges.
	if err := os.WriteFile(filepath.Join(p.conf, "receiver.key"), certs.keyPEM, 0o600); err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	return nil
}

// startSink starts the LMTP receiver and waits until it accepts
// connections.
func (p *Postfix) startSink() error {
	addr := net.JoinHostPort(p.Addr(ReceiverLMTP), "24")
	logf, err := os.Create(filepath.Join(p.root, "smtp-sink.out"))
	if err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	defer logf.Close()
	// -L: LMTP; -u: drop to postfix after binding; 10: listen backlog.
	cmd := exec.Command(p.tools["smtp-sink"], "-L", "-u", "postfix", addr, "10")
	cmd.Env = append(cleanEnv(), markerEnv+"="+p.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("e2e: start smtp-sink: %w", err)
	}
	p.sink = cmd
	p.sinkDone = make(chan error, 1)
	go func() { p.sinkDone <- cmd.Wait() }()
	return p.waitDial(addr)
}

func (p *Postfix) waitDial(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return poll(ctx, func() (bool, error) {
		c, err := net.DialTimeout("tcp4", addr, time.Second)
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	}, func() string { return "nothing accepts connections on " + addr })
}

// startPostfix starts the master in a private mount namespace whose
// /etc/hosts is the instance's hosts file, and whose /etc/resolv.conf is
// the instance's with Config.DNS.
func (p *Postfix) startPostfix(ctx context.Context) error {
	// Output goes to a file, not a pipe: the daemon would keep a pipe open.
	outPath := filepath.Join(p.root, "postfix-start.out")
	outf, err := os.Create(outPath)
	if err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	defer outf.Close()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	script := `mount --bind "$1" /etc/hosts && exec "$2" -c "$3" start`
	if p.dns {
		script = `mount --bind "$1" /etc/hosts && mount --bind "$4" /etc/resolv.conf && exec "$2" -c "$3" start`
	}
	cmd := exec.CommandContext(c, p.tools["unshare"], "-m", "--propagation", "private", "--",
		p.tools["sh"], "-c", script,
		"sh", filepath.Join(p.conf, "hosts"), p.tools["postfix"], p.conf, filepath.Join(p.conf, "resolv.conf"))
	cmd.Env = cleanEnv()
	cmd.Dir = p.root
	cmd.Stdout, cmd.Stderr = outf, outf
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(outPath)
		lines, _, _ := readLines(p.logPath, 0)
		return fmt.Errorf("e2e: postfix -c %s start: %w\n%s\nmaillog:\n%s", p.conf, err, out, strings.Join(lines, "\n"))
	}
	// master -w returns once the daemon is initialised; check anyway.
	if _, err := p.WaitLog(ctx, LineContains("postfix/master[", "daemon started")); err != nil {
		return err
	}
	return p.waitDial(p.SubmitAddr())
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
