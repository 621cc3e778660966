//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/servetest"
	"github.com/mailtls/mailtls/internal/testnet"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// mailtlsBin builds the real binary once per test run.
func mailtlsBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mailtls-e2e-bin")
		if err != nil {
			binErr = err
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Dir(filepath.Dir(file))
		binPath = filepath.Join(dir, "mailtls")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/mailtls")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build ./cmd/mailtls: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// freePort returns a loopback port that was free a moment ago. It is taken
// below the kernel's ephemeral range (32768 and up on Linux), so that no
// other test's ":0" listener or outgoing connection grabs it before mailtls
// binds it.
func freePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 200; i++ {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	t.Fatal("no free loopback port in 20000-31999")
	return 0
}

// mailtlsRun is a `mailtls run` process.
type mailtlsRun struct {
	t    *testing.T
	bin  string
	args []string
	env  []string // nil: this process's environment
	cmd  *exec.Cmd
	done chan error
	log  *servetest.SyncBuffer
	db   string
	smap string
	tcp  string
	// emptyDNS is the loopback resolver start gives the default sources.
	emptyDNS string
}

func newMailtlsRun(t *testing.T, logPath string) *mailtlsRun {
	m := &mailtlsRun{
		t: t, bin: mailtlsBin(t), log: &servetest.SyncBuffer{},
		db:   filepath.Join(t.TempDir(), "mailtls.db"),
		smap: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		tcp:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	m.args = []string{"run", "--db", m.db, "--log", logPath, "--socketmap", m.smap, "--tcp", m.tcp,
		"--poll", "100ms", "--reload-every", "200ms", "--config", "/dev/null", "--http", ""}
	t.Cleanup(func() {
		if m.cmd != nil && m.cmd.ProcessState == nil {
			_ = m.cmd.Process.Kill()
			<-m.done
		}
		if t.Failed() {
			t.Logf("mailtls log:\n%s", m.log.String())
		}
	})
	return m
}

// start runs the process and waits until the socketmap answers.
func (m *mailtlsRun) start() {
	m.t.Helper()
	args := m.args
	if !slices.Contains(args, "--resolver") && !slices.Contains(args, "--sources") {
		// The default sources consult DNS: an empty loopback zone keeps
		// the default configuration under test and every query on the
		// machine (destinations publish nothing, so the default answers).
		if m.emptyDNS == "" {
			m.emptyDNS = testnet.StartDNS(m.t, testnet.NewZone())
		}
		args = append(slices.Clone(args), "--resolver", m.emptyDNS)
	}
	m.cmd = exec.Command(m.bin, args...)
	m.cmd.Env = m.env
	m.cmd.Stdout = m.log
	m.cmd.Stderr = m.log
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	m.done = make(chan error, 1)
	go func(c *exec.Cmd) { m.done <- c.Wait() }(m.cmd)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.smap, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-m.done:
			m.t.Fatalf("mailtls run exited at start: %v\n%s", err, m.log.String())
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mailtls run did not listen within 30s:\n%s", m.log.String())
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	// The listeners open just before the start-up line is logged.
	waitFor(m.t, "start-up line logged", 10*time.Second, func() bool {
		return strings.Contains(m.log.String(), "mailtls run started")
	})
}

// stop sends SIGTERM and requires a clean exit within 5 s.
func (m *mailtlsRun) stop() {
	m.t.Helper()
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		m.t.Fatal(err)
	}
	select {
	case err := <-m.done:
		if err != nil {
			m.t.Fatalf("mailtls run exited with %v after SIGTERM:\n%s", err, m.log.String())
		}
	case <-time.After(5 * time.Second):
		m.t.Fatalf("mailtls run did not exit within 5s of SIGTERM")
	}
}

// cli runs a mailtls command against the same database.
func (m *mailtlsRun) cli(args ...string) string {
	m.t.Helper()
	cmd := exec.Command(m.bin, append(args, "--db", m.db)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		m.t.Fatalf("mailtls %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

type row struct {
	Time        string `json:"time"`
	QueueID     string `json:"queue_id"`
	Recipient   string `json:"recipient"`
	Domain      string `json:"domain"`
	Relay       string `json:"relay"`
	Status      string `json:"status"`
	DSN         string `json:"dsn"`
	TLS         *bool  `json:"tls"`
	TLSTrust    string `json:"tls_trust"`
	TLSProtocol string `json:"tls_protocol"`
	TLSCipher   string `json:"tls_cipher"`
	Fallback    bool   `json:"fallback"`
}

func (m *mailtlsRun) rows() []row {
	m.t.Helper()
	var out []row
	sc := bufio.NewScanner(strings.NewReader(m.cli("deliveries", "--format", "jsonl")))
	for sc.Scan() {
		var r row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			m.t.Fatalf("bad jsonl %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// waitRow polls the stored deliveries until one matches.
func (m *mailtlsRun) waitRow(what string, match func(row) bool) row {
	m.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, r := range m.rows() {
			if match(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("no stored delivery for %s within 60s; rows: %+v", what, m.rows())
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}

// tlsLineRE reads the protocol and cipher from Postfix's own TLS line,
// independently of the code under test.
var tlsLineRE = regexp.MustCompile(`(\w+) TLS connection established to ([^ ]+): (\S+) with cipher (\S+)`)

func waitFor(t *testing.T, what string, within time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

func TestEndToEndSocketmap(t *testing.T) { testEndToEnd(t, "socketmap") }
func TestEndToEndTCPTable(t *testing.T)  { testEndToEnd(t, "tcp") }

func testEndToEnd(t *testing.T, via string) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// The mailtls process needs the instance's log path, and the instance
	// needs mailtls's address: pick the ports first.
	var m *mailtlsRun
	smap := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	tcp := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	maps := "socketmap:inet:" + smap + ":tlspolicy"
	if via == "tcp" {
		maps = "tcp:" + tcp
	}
	pf := StartPostfix(t, Config{
		PolicyMaps: maps,
		Hosts:      map[string]string{"nots.wild.test": string(ReceiverPlain)},
	})
	m = newMailtlsRun(t, pf.LogPath())
	m.smap, m.tcp = smap, tcp
	web := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	m.args = []string{"run", "--db", m.db, "--log", pf.LogPath(), "--socketmap", smap, "--tcp", tcp,
		"--poll", "100ms", "--reload-every", "200ms", "--config", "/dev/null", "--http", web}
	m.start()

	if out, code := pf.Postmap("tls.test", maps); code != 0 || out != "may" {
		t.Fatalf("postmap -q tls.test %s = %q (exit %d), want may", maps, out, code)
	}

	// 1. TLS-capable domain, no override: delivered, recorded tls=true with
	// the protocol and cipher Postfix logged.
	q1 := pf.Send("sender@e2e.test", "alice@tls.test", "scenario 1")
	tlsLine, err := pf.WaitLog(ctx, LineContains("TLS connection established to tls.test"))
	if err != nil {
		t.Fatal(err)
	}
	mt := tlsLineRE.FindStringSubmatch(tlsLine)
	if mt == nil {
		t.Fatalf("unexpected TLS line %q", tlsLine)
	}
	r1 := m.waitRow("scenario 1", func(r row) bool { return r.QueueID == q1 && r.Status == "sent" })
	if r1.TLS == nil || !*r1.TLS || r1.TLSProtocol != mt[3] || r1.TLSCipher != mt[4] || !strings.EqualFold(r1.TLSTrust, mt[1]) {
		t.Errorf("scenario 1: row %+v, Postfix logged %s %s %s", r1, mt[1], mt[3], mt[4])
	}
	if r1.Domain != "tls.test" || r1.Recipient != "alice@tls.test" || r1.DSN != "2.0.0" {
		t.Errorf("scenario 1: row %+v", r1)
	}

	// 2. Plaintext domain, no override: delivered in plaintext, tls=false.
	q2 := pf.Send("sender@e2e.test", "bob@plain.test", "scenario 2")
	r2 := m.waitRow("scenario 2", func(r row) bool { return r.QueueID == q2 && r.Status == "sent" })
	if r2.TLS == nil || *r2.TLS || r2.Fallback {
		t.Errorf("scenario 2: want tls=false, got %+v", r2)
	}

	// mailtls survives SIGHUP and a log rotation during the run.
	if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SIGHUP logged", 10*time.Second, func() bool { return strings.Contains(m.log.String(), "SIGHUP") })
	if out, err := exec.Command("postfix", "-c", pf.ConfigDir(), "logrotate").CombinedOutput(); err != nil {
		t.Fatalf("postfix logrotate: %v: %s", err, out)
	}

	// 3. The plaintext domain under `encrypt`: deferred with 4.7.4, recorded,
	// and visible in `report overrides`.
	m.cli("policy", "set", "plain.test", "encrypt")
	waitFor(t, "encrypt served", 5*time.Second, func() bool { out, _ := pf.Postmap("plain.test", maps); return out == "encrypt" })
	q3 := pf.Send("sender@e2e.test", "carol@plain.test", "scenario 3")
	r3 := m.waitRow("scenario 3", func(r row) bool { return r.QueueID == q3 && r.Status == "deferred" })
	if r3.DSN != "4.7.4" {
		t.Errorf("scenario 3: want dsn 4.7.4, got %+v", r3)
	}
	var ovr struct {
		Overrides []struct {
			Key         string `json:"key"`
			Sent        int64  `json:"sent"`
			Deferred    int64  `json:"deferred"`
			TLSDeferred int64  `json:"tls_deferred"`
		} `json:"rows"`
		Warnings []any `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(m.cli("report", "overrides", "--format", "json", "--since", "1h")), &ovr); err != nil {
		t.Fatal(err)
	}
	if len(ovr.Overrides) != 1 || ovr.Overrides[0].Key != "plain.test" || ovr.Overrides[0].Deferred < 1 || ovr.Overrides[0].TLSDeferred < 1 || len(ovr.Warnings) != 0 {
		t.Errorf("scenario 3: report overrides = %+v", ovr)
	}

	// 4. A .wildcard override applies to a subdomain, not to the parent.
	m.cli("policy", "set", ".wild.test", "encrypt")
	waitFor(t, "wildcard served", 5*time.Second, func() bool { out, _ := pf.Postmap("nots.wild.test", maps); return out == "encrypt" })
	q4a := pf.Send("sender@e2e.test", "dave@nots.wild.test", "scenario 4a")
	q4b := pf.Send("sender@e2e.test", "erin@wild.test", "scenario 4b")
	r4a := m.waitRow("scenario 4a", func(r row) bool { return r.QueueID == q4a })
	if r4a.Status != "deferred" || r4a.DSN != "4.7.4" {
		t.Errorf("scenario 4: subdomain under .wild.test encrypt: %+v", r4a)
	}
	r4b := m.waitRow("scenario 4b", func(r row) bool { return r.QueueID == q4b })
	if r4b.Status != "sent" || r4b.TLS == nil || *r4b.TLS {
		t.Errorf("scenario 4: parent wild.test must stay may (plaintext sent): %+v", r4b)
	}

	// 5. TLSv1-only receiver under `may protocols=>=TLSv1.2`: deferred,
	// then sent in plaintext after the backoff, recorded as fallback.
	m.cli("policy", "set", "tls1.test", "may", "protocols=>=TLSv1.2")
	waitFor(t, "tls1 policy served", 5*time.Second, func() bool {
		out, _ := pf.Postmap("tls1.test", maps)
		return out == "may protocols=>=TLSv1.2"
	})
	q5 := pf.Send("sender@e2e.test", "frank@tls1.test", "scenario 5")
	r5d := m.waitRow("scenario 5 deferral", func(r row) bool { return r.QueueID == q5 && r.Status == "deferred" })
	if r5d.DSN != "4.7.5" {
		t.Errorf("scenario 5: first attempt %+v, want deferred 4.7.5", r5d)
	}
	r5 := m.waitRow("scenario 5 fallback", func(r row) bool { return r.QueueID == q5 && r.Status == "sent" })
	if r5.TLS == nil || *r5.TLS || !r5.Fallback {
		t.Errorf("scenario 5: want plaintext fallback, got %+v", r5)
	}

	// 6. The summary agrees exactly with what happened.
	var sum map[string]any
	if err := json.Unmarshal([]byte(m.cli("report", "--format", "json", "--since", "1h")), &sum); err != nil {
		t.Fatal(err)
	}
	// Sent: tls.test (TLS), plain.test, wild.test, tls1.test (plaintext, 1 fallback).
	// Deferred: plain.test (4.7.4), nots.wild.test (4.7.4), tls1.test (4.7.5) at least
	// once each; Postfix retries deferred mail, so count the deferrals in the rows.
	rows := m.rows()
	var deferred, tlsDeferred int
	for _, r := range rows {
		if r.Status == "deferred" {
			deferred++
			if strings.HasPrefix(r.DSN, "4.7.") {
				tlsDeferred++
			}
		}
	}
	want := map[string]float64{
		"deliveries": 4, "encrypted": 1, "plaintext": 3, "unknown": 0, "fallback": 1,
		"coverage": 0.25, "deferred": float64(deferred), "tls_deferred": float64(tlsDeferred), "bounced": 0,
		"domains": 4, "domains_all_tls": 1, "domains_any_plaintext": 3,
	}
	for k, v := range want {
		if got, ok := sum[k].(float64); !ok || got != v {
			t.Errorf("report %s = %v, want %v (report %v)", k, sum[k], v, sum)
		}
	}
	if deferred < 3 {
		t.Errorf("want at least 3 deferrals recorded, got %d", deferred)
	}
	if bt, _ := sum["by_protocol"].(map[string]any); bt == nil || bt[mt[3]] != float64(1) {
		t.Errorf("by_protocol = %v, want {%s: 1}", sum["by_protocol"], mt[3])
	}

	// 6b. status: the follower of the real log is known, on the current
	// file, and every recorded row is counted.
	var status struct {
		Stored    int `json:"deliveries_stored"`
		Followers []struct {
			Source string `json:"source"`
			Behind int64  `json:"behind_bytes"`
		} `json:"followers"`
	}
	if err := json.Unmarshal([]byte(m.cli("status", "--format", "json")), &status); err != nil {
		t.Fatal(err)
	}
	if status.Stored != len(rows) || len(status.Followers) != 1 || !strings.HasPrefix(status.Followers[0].Source, "file:") || status.Followers[0].Behind < 0 {
		t.Errorf("status = %+v, want %d deliveries stored and one file follower on the current log", status, len(rows))
	}

	// 6c. /metrics agrees with the report, and Postfix used the map.
	checkMetrics(t, m, web, via)

	// 7. mailtls stopped: Postfix defers instead of sending without policy;
	// after a restart the queue drains.
	m.cli("policy", "rm", "plain.test")
	m.cli("policy", "rm", ".wild.test")
	pf.PurgeQueue()
	m.stop()
	q7 := pf.Send("sender@e2e.test", "grace@tls.test", "scenario 7")
	if _, err := pf.WaitLog(ctx, func(l string) bool {
		return strings.Contains(l, q7+": to=<grace@tls.test>") && strings.Contains(l, "status=deferred")
	}); err != nil {
		t.Fatalf("scenario 7: no deferral while mailtls is down: %v", err)
	}
	for _, l := range pf.LogLines() {
		if strings.Contains(l, q7+": to=") && strings.Contains(l, "status=sent") {
			t.Fatalf("scenario 7: sent without policy: %s", l)
		}
	}
	m.start()
	pf.Flush()
	if err := pf.WaitQueueEmpty(ctx); err != nil {
		t.Fatalf("scenario 7: queue did not drain after restart: %v", err)
	}
	r7 := m.waitRow("scenario 7", func(r row) bool { return r.QueueID == q7 && r.Status == "sent" })
	if r7.TLS == nil || !*r7.TLS {
		t.Errorf("scenario 7: %+v", r7)
	}
	m.stop()
}
