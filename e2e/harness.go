//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/testnet"
)

// ErrWaitTimeout is returned (wrapped) when a Wait helper's deadline passes
// before the awaited state is seen.
var ErrWaitTimeout = errors.New("e2e: wait timed out")

// DefaultWait bounds every Wait helper whose context has no deadline.
const DefaultWait = 60 * time.Second

const pollEvery = 50 * time.Millisecond

// Receiver names one of an instance's receiving services.
type Receiver string

// The receivers every instance runs (see the package comment).
const (
	ReceiverTLS   Receiver = "tls"   // STARTTLS, certificate for ReceiverCertNames from the test CA
	ReceiverPlain Receiver = "plain" // no STARTTLS
	ReceiverTLS1  Receiver = "tls1"  // STARTTLS with TLSv1.0 only
	ReceiverLMTP  Receiver = "lmtp"  // LMTP (smtp-sink -L) on port 24, no TLS
	// ReceiverExpired: STARTTLS, a certificate from the test CA for
	// expired.test that expired yesterday.
	ReceiverExpired Receiver = "expired"
	// ReceiverUntrusted: STARTTLS, a certificate for untrusted.test from a
	// CA that Postfix does not trust (not even with Config.TrustTestCA).
	ReceiverUntrusted Receiver = "untrusted"
)

// hostOctet is the last octet of each receiver's address 127.0.N.x.
var hostOctet = map[Receiver]int{ReceiverTLS: 2, ReceiverPlain: 3, ReceiverTLS1: 4, ReceiverLMTP: 5, ReceiverExpired: 6, ReceiverUntrusted: 7}

const submitOctet = 1

// dnsOctet is the last octet of the address of Config.DNS's server.
const dnsOctet = 53

// DefaultHosts returns the name -> receiver map written to the instance's
// private /etc/hosts. Config.Hosts is merged over it.
func DefaultHosts() map[string]string {
	return map[string]string{
		"tls.test":           string(ReceiverTLS),
		"verify.test":        string(ReceiverTLS), // not in the certificate: hostname mismatch
		"sub.wild.test":      string(ReceiverTLS),
		"deep.sub.wild.test": string(ReceiverTLS), // not matched by *.wild.test
		"out.test":           string(ReceiverTLS), // via transport smtp-out (postfix-out/smtp)
		"plain.test":         string(ReceiverPlain),
		"wild.test":          string(ReceiverPlain),
		"tls1.test":          string(ReceiverTLS1),
		"lmtp.test":          string(ReceiverLMTP), // via transport lmtp
		"expired.test":       string(ReceiverExpired),
		"untrusted.test":     string(ReceiverUntrusted),
	}
}

// DefaultTransports returns the transport_maps entries every instance has.
// Config.Transports is merged over it.
func DefaultTransports() map[string]string {
	return map[string]string{
		"out.test":  "smtp-out:",
		"lmtp.test": "lmtp:inet:lmtp.test:24",
	}
}

// Config describes one Postfix instance. The zero value is a sender with
// opportunistic TLS (may), no policy map, the default hosts and transports.
type Config struct {
	// PolicyMaps is smtp_tls_policy_maps, e.g.
	// "socketmap:inet:127.0.0.1:8470:tlspolicy", "tcp:127.0.0.1:8471" or
	// "texthash:$config_directory/tls_policy" (with Files). Empty: unset.
	PolicyMaps string
	// ConnectionReuse sets smtp_tls_connection_reuse = yes (through
	// tlsproxy(8), which then logs its own copy of each TLS line). Set
	// Main["smtp_connection_cache_destinations"] to cache connections to a
	// destination without a backlog, so that reuse actually happens.
	ConnectionReuse bool
	// TrustTestCA sets smtp_tls_CAfile to the test CA, so that the "tls"
	// receiver is Trusted (may, encrypt) or Verified (verify, secure).
	// Without it, it is Untrusted.
	TrustTestCA bool
	// Hosts adds or replaces /etc/hosts entries: name -> receiver
	// ("tls", "plain", "tls1", "lmtp", "expired", "untrusted") or an IP address.
	Hosts map[string]string
	// Transports adds or replaces transport_maps entries:
	// domain -> "transport:nexthop".
	Transports map[string]string
	// Files are written into the config directory before start (mode 0644,
	// readable by the postfix user). Refer to them as $config_directory/NAME.
	Files map[string]string
	// DNS, when set, is the instance's DNS: the harness serves it on
	// 127.0.N.53:53 (DNSAddr), the master's mount namespace gets a private
	// /etc/resolv.conf naming only that server, with "options trust-ad" so
	// that glibc passes its AD bit on, and the SMTP client resolves
	// through it: smtp_host_lookup=dns, smtp_dns_support_level=dnssec
	// (DANE). Tests add the records (MX, A, TLSA) after StartPostfix, when
	// the receivers' addresses are known (Addr), and Sign the zones whose
	// answers are DNSSEC-validated. The harness adds a signed NS record
	// for the root, which Postfix's dnssec_probe asks for. The private
	// /etc/hosts stays, for lmtp(8), whose lookups stay native.
	DNS *testnet.Zone
	// Main adds or replaces main.cf parameters; applied last.
	Main map[string]string
}

// Postfix is a running, isolated Postfix instance. Methods that take no
// context call t.Fatal on failure, so call them from the test goroutine.
type Postfix struct {
	t        testing.TB
	tools    map[string]string
	slot     int
	root     string // /tmp/mailtls-e2e/slotS
	conf     string // config_directory
	queue    string
	logPath  string
	netPfx   string // "127.0.N."
	lock     *os.File
	sink     *exec.Cmd
	sinkDone chan error
	stopOnce sync.Once
	dns      bool // Config.DNS was set
}

// QueueRecipient is one recipient of a queued message (postqueue -j).
type QueueRecipient struct {
	Address     string `json:"address"`
	DelayReason string `json:"delay_reason"`
}

// QueueEntry is one message in the queue, as printed by postqueue -j.
type QueueEntry struct {
	QueueName   string           `json:"queue_name"` // incoming, active, deferred, hold, ...
	QueueID     string           `json:"queue_id"`
	ArrivalTime int64            `json:"arrival_time"`
	MessageSize int64            `json:"message_size"`
	Sender      string           `json:"sender"`
	Recipients  []QueueRecipient `json:"recipients"`
}

// StartPostfix starts an isolated Postfix instance and stops it in
// t.Cleanup. It fails the test, naming what is missing, when Postfix,
// swaks, unshare or root privileges are not available; it never skips.
func StartPostfix(t testing.TB, cfg Config) *Postfix {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("e2e: the Postfix harness needs root (port 25, mount namespace, postfix start); run as root, as .ci/run does")
	}
	tools, err := findTools(toolSearchPath())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultWait)
	defer cancel()

	slot, lock, err := acquireSlot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(baseDir, fmt.Sprintf("slot%d", slot))
	p := &Postfix{
		t:       t,
		tools:   tools,
		slot:    slot,
		root:    root,
		conf:    filepath.Join(root, "etc"),
		queue:   filepath.Join(root, "queue"),
		logPath: filepath.Join(root, "log", "maillog"),
		netPfx:  fmt.Sprintf("127.0.%d.", slot+1),
		lock:    lock,
	}
	// Registered before anything is started, so that a failed start is
	// cleaned up too.
	t.Cleanup(p.cleanup)

	if err := p.killStale(); err != nil {
		t.Fatal(err)
	}
	if err := ensureDefaultMainCF(ctx, tools["postconf"]); err != nil {
		t.Fatal(err)
	}
	if err := p.checkAddrsFree(); err != nil {
		t.Fatal(err)
	}
	if err := p.writeConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.DNS != nil {
		// Postfix's dnssec_probe (ns:.) checks at the first DNSSEC
		// lookup that the resolver validates: a signed root NS answers.
		cfg.DNS.Add(t, ". 86400 IN NS ns.root.test.")
		cfg.DNS.Sign(".")
		if err := testnet.StartDNSAt(t, cfg.DNS, p.DNSAddr()); err != nil {
			t.Fatal(err)
		}
		p.dns = true
	}
	if err := p.startSink(); err != nil {
		t.Fatal(err)
	}
	if err := p.startPostfix(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("e2e: postfix slot %d: config %s, log %s, submit %s", slot, p.conf, p.logPath, p.SubmitAddr())
	return p
}

// ConfigDir is the instance's config_directory (main.cf, master.cf, hosts,
// transport, certificates, Config.Files).
func (p *Postfix) ConfigDir() string { return p.conf }

// QueueDir is the instance's queue_directory.
func (p *Postfix) QueueDir() string { return p.queue }

// LogPath is the maillog_file written by postlogd.
func (p *Postfix) LogPath() string { return p.logPath }

// CAFile is the PEM file of the test CA that issued the "tls" receiver's
// certificate.
func (p *Postfix) CAFile() string { return filepath.Join(p.conf, "ca.pem") }

// DNSAddr is the host:port (127.0.N.53:53) where Config.DNS is served,
// for mailtls's --resolver.
func (p *Postfix) DNSAddr() string {
	return net.JoinHostPort(p.netPfx+strconv.Itoa(dnsOctet), "53")
}

// SubmitAddr is the host:port of the smtpd where Send injects mail.
func (p *Postfix) SubmitAddr() string {
	return net.JoinHostPort(fmt.Sprintf("%s%d", p.netPfx, submitOctet), "25")
}

// Addr is the IP address of a receiver (port 25, or 24 for ReceiverLMTP).
func (p *Postfix) Addr(r Receiver) string {
	o, ok := hostOctet[r]
	if !ok {
		p.t.Fatalf("e2e: unknown receiver %q: use tls, plain, tls1 or lmtp", r)
	}
	return fmt.Sprintf("%s%d", p.netPfx, o)
}

var queuedAs = regexp.MustCompile(`(?m)^<-  250 .*queued as ([0-9A-Za-z]+)`)

// Send injects one message over SMTP (swaks) and returns its queue ID.
// to may list several recipients separated by commas; they all go into
// the same message.
func (p *Postfix) Send(from, to, subject string) string {
	p.t.Helper()
	out, errOut, err := p.run(30*time.Second, "swaks",
		"--server", p.SubmitAddr(), "--from", from, "--to", to,
		"--helo", "client.e2e.test",
		"--header", "Subject: "+subject,
		"--body", "mailtls e2e test message: "+subject,
		"--timeout", "20")
	if err != nil {
		p.t.Fatalf("e2e: swaks to %s: %v\n%s%s", to, err, out, errOut)
	}
	m := queuedAs.FindStringSubmatch(out)
	if m == nil {
		p.t.Fatalf("e2e: swaks to %s: no queue ID in reply:\n%s", to, out)
	}
	return m[1]
}

// Flush asks the queue manager to retry all deferred mail now
// (postqueue -f). Postfix falls back to plaintext after a failed
// handshake only once the message has waited minimal_backoff_time (2s)
// before the attempt, so a flush right after a deferral defers again.
func (p *Postfix) Flush() {
	p.t.Helper()
	if out, errOut, err := p.run(30*time.Second, "postqueue", "-c", p.conf, "-f"); err != nil {
		p.t.Fatalf("e2e: postqueue -f: %v\n%s%s", err, out, errOut)
	}
}

// PurgeQueue deletes every queued message (postsuper -d ALL).
func (p *Postfix) PurgeQueue() {
	p.t.Helper()
	if out, errOut, err := p.run(30*time.Second, "postsuper", "-c", p.conf, "-d", "ALL"); err != nil {
		p.t.Fatalf("e2e: postsuper -d ALL: %v\n%s%s", err, out, errOut)
	}
}

// Queue lists the queued messages (postqueue -j).
func (p *Postfix) Queue() []QueueEntry {
	p.t.Helper()
	q, err := p.queueEntries()
	if err != nil {
		p.t.Fatal(err)
	}
	return q
}

func (p *Postfix) queueEntries() ([]QueueEntry, error) {
	out, errOut, err := p.run(30*time.Second, "postqueue", "-c", p.conf, "-j")
	if err != nil {
		return nil, fmt.Errorf("e2e: postqueue -j: %w: %s", err, errOut)
	}
	var q []QueueEntry
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var e QueueEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, fmt.Errorf("e2e: postqueue -j: bad line %q: %w", line, err)
		}
		q = append(q, e)
	}
	return q, nil
}

// WaitQueueEmpty polls postqueue -j until the queue is empty.
func (p *Postfix) WaitQueueEmpty(ctx context.Context) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	var last []QueueEntry
	return poll(ctx, func() (bool, error) {
		q, err := p.queueEntries()
		if err != nil {
			return false, err
		}
		last = q
		return len(q) == 0, nil
	}, func() string { return fmt.Sprintf("queue of %s not empty: %+v", p.conf, last) })
}

// WaitLog polls the maillog from its beginning until pred accepts a line,
// and returns that line.
func (p *Postfix) WaitLog(ctx context.Context, pred func(line string) bool) (string, error) {
	return p.WaitLogAfter(ctx, 0, pred)
}

// WaitLogAfter is WaitLog for lines that start at or after byte offset off
// (see LogSize), for events that may also have happened earlier.
func (p *Postfix) WaitLogAfter(ctx context.Context, off int64, pred func(line string) bool) (string, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	var found string
	err := poll(ctx, func() (bool, error) {
		lines, next, err := readLines(p.logPath, off)
		if err != nil {
			return false, err
		}
		off = next
		for _, l := range lines {
			if pred(l) {
				found = l
				return true, nil
			}
		}
		return false, nil
	}, func() string { return "no matching line in " + p.logPath })
	return found, err
}

// LogSize is the offset just past the last complete line of the maillog,
// for WaitLogAfter.
func (p *Postfix) LogSize() int64 {
	p.t.Helper()
	_, next, err := readLines(p.logPath, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	return next
}

// LogLines returns the complete lines of the maillog, without newlines.
func (p *Postfix) LogLines() []string {
	p.t.Helper()
	lines, _, err := readLines(p.logPath, 0)
	if err != nil {
		p.t.Fatal(err)
	}
	return lines
}

// LineContains returns a predicate for WaitLog that accepts lines
// containing every one of subs.
func LineContains(subs ...string) func(line string) bool {
	return func(line string) bool {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				return false
			}
		}
		return true
	}
}

// Postmap runs `postmap -q key mapSpec` with the instance's configuration,
// the real Postfix client for any map type, e.g.
// "socketmap:inet:127.0.0.1:8470:tlspolicy". It returns stdout without the
// trailing newline and the exit status (0 found, 1 not found, other:
// error; stderr is logged).
func (p *Postfix) Postmap(key, mapSpec string) (out string, exit int) {
	p.t.Helper()
	stdout, stderr, err := p.run(30*time.Second, "postmap", "-c", p.conf, "-q", key, mapSpec)
	if stderr != "" {
		p.t.Logf("e2e: postmap -q %s %s: %s", key, mapSpec, strings.TrimSpace(stderr))
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		exit = ee.ExitCode()
	default:
		p.t.Fatalf("e2e: postmap -q %s %s: %v", key, mapSpec, err)
	}
	return strings.TrimSuffix(stdout, "\n"), exit
}

// Reconfigure sets main.cf parameters (postconf -e), reloads Postfix and
// waits until the master has logged the reload. Processes started after
// that use the new values.
func (p *Postfix) Reconfigure(params map[string]string) {
	p.t.Helper()
	args := []string{"-c", p.conf, "-e"}
	for k, v := range params {
		args = append(args, k+"="+v)
	}
	if out, errOut, err := p.run(30*time.Second, "postconf", args...); err != nil {
		p.t.Fatalf("e2e: postconf -e: %v\n%s%s", err, out, errOut)
	}
	off := p.LogSize()
	if out, errOut, err := p.run(30*time.Second, "postfix", "-c", p.conf, "reload"); err != nil {
		p.t.Fatalf("e2e: postfix reload: %v\n%s%s", err, out, errOut)
	}
	if _, err := p.WaitLogAfter(context.Background(), off, LineContains("postfix/master[", "reload -- version")); err != nil {
		p.t.Fatalf("e2e: postfix reload: %v", err)
	}
}

// Stop stops the instance and checks that none of its processes remain.
// It is safe to call more than once; t.Cleanup calls it too.
func (p *Postfix) Stop() {
	p.t.Helper()
	p.stopOnce.Do(p.stop)
}

func (p *Postfix) stop() {
	t := p.t
	if p.sink != nil {
		_ = p.sink.Process.Signal(syscall.SIGTERM)
	}
	if _, err := os.Stat(filepath.Join(p.conf, "main.cf")); err == nil {
		out, errOut, err := p.run(30*time.Second, "postfix", "-c", p.conf, "stop")
		if err != nil && !strings.Contains(out+errOut, "not running") {
			t.Errorf("e2e: postfix stop: %v\n%s%s", err, out, errOut)
		}
	}
	if err := killInstance(p.conf, 15*time.Second); err != nil {
		t.Error(err)
	}
	if p.sink != nil {
		timer := time.NewTimer(5 * time.Second)
		defer timer.Stop()
		select {
		case <-p.sinkDone:
		case <-timer.C:
			_ = p.sink.Process.Kill()
			<-p.sinkDone
		}
	}
}

func (p *Postfix) cleanup() {
	t := p.t
	p.Stop()
	if path := os.Getenv("MAILTLS_E2E_CAPTURE"); path != "" {
		if err := appendFile(path, p.logPath); err != nil {
			t.Errorf("e2e: capture log: %v", err)
		}
	}
	if t.Failed() {
		if lines, _, err := readLines(p.logPath, 0); err == nil {
			if len(lines) > 60 {
				lines = lines[len(lines)-60:]
			}
			t.Logf("e2e: last lines of %s (instance kept in %s):\n%s", p.logPath, p.root, strings.Join(lines, "\n"))
		}
	} else if err := os.RemoveAll(p.root); err != nil {
		t.Errorf("e2e: remove %s: %v", p.root, err)
	}
	if err := p.lock.Close(); err != nil { // releases the flock
		t.Errorf("e2e: release slot %d: %v", p.slot, err)
	}
}

// run runs a tool by name with a timeout; stdout and stderr are returned
// separately.
func (p *Postfix) run(timeout time.Duration, tool string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.tools[tool], args...)
	cmd.Env = cleanEnv()
	cmd.Dir = "/"
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	// Daemons started by the command may inherit the pipes; do not wait
	// for them to close.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// bound gives ctx a deadline of DefaultWait when it has none.
func bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultWait)
}

// poll calls check every pollEvery until it reports done, fails, or ctx
// ends; what describes the awaited state for the timeout error.
func poll(ctx context.Context, check func() (bool, error), what func() string) error {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		done, err := check()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s: %v", ErrWaitTimeout, what(), ctx.Err())
		case <-tick.C:
		}
	}
}

// readLines returns the complete lines of path from byte offset off, and
// the offset just past the last of them. A missing file has no lines.
func readLines(path string, off int64) ([]string, int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, off, nil
	}
	if err != nil {
		return nil, off, fmt.Errorf("e2e: read log: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(off, 0); err != nil {
		return nil, off, fmt.Errorf("e2e: read log: %w", err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, off, fmt.Errorf("e2e: read log: %w", err)
	}
	b := buf.Bytes()
	end := bytes.LastIndexByte(b, '\n')
	if end < 0 {
		return nil, off, nil
	}
	return strings.Split(string(b[:end]), "\n"), off + int64(end) + 1, nil
}

func appendFile(dst, src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
