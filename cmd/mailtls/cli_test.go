package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/cliargs"
	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/internal/servetest"
	"github.com/mailtls/mailtls/internal/testnet"
)

// cli runs the whole command line in-process against one database.
type cliT struct {
	t  *testing.T
	db string
}

// With MAILTLS_TEST_CLI_ENGINE=postgres (make test runs the package so a
// second time) the database is a fresh PostgreSQL one instead.
func newCLI(t *testing.T) *cliT {
	t.Helper()
	if os.Getenv("MAILTLS_TEST_CLI_ENGINE") == "postgres" {
		return &cliT{t: t, db: pgtest.DSN(t)}
	}
	return &cliT{t: t, db: filepath.Join(t.TempDir(), "mailtls.db")}
}

func (c *cliT) getenv(k string) string {
	switch k {
	case "MAILTLS_DB":
		return c.db
	case "USER":
		return "tester"
	}
	return ""
}

func (c *cliT) run(stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), append([]string{"mailtls"}, args...),
		env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: c.getenv})
	return out.String(), errb.String(), code
}

func (c *cliT) ok(args ...string) string {
	c.t.Helper()
	out, errs, code := c.run("", args...)
	if code != 0 {
		c.t.Fatalf("mailtls %s: exit %d, stderr %q", strings.Join(args, " "), code, errs)
	}
	return out
}

func (c *cliT) overrides() []map[string]any {
	c.t.Helper()
	var got []map[string]any
	if err := json.Unmarshal([]byte(c.ok("policy", "list", "--format", "json")), &got); err != nil {
		c.t.Fatal(err)
	}
	return got
}

func TestPolicySetRejectsBadInput(t *testing.T) {
	c := newCLI(t)
	for _, args := range [][]string{
		{"example.com", "encrpyt"},
		{"example.com", "may", "match=foo"},
		{"a b", "encrypt"},
		{"example.com", "encrypt protocols=TLSv1.2,ciphers=high"},
		{"example.com", "encrypt", "protocols=TLSv1.2\nciphers=high"},
		{"example.com", "encrypt", "bogus=1"},
		{"exa mple.com", "encrypt"},
		{"example.com", "encrypt", "--expires", "soon"},
	} {
		_, errs, code := c.run("", append([]string{"policy", "set"}, args...)...)
		if code != exitUsage {
			t.Errorf("policy set %q: exit %d, want %d", args, code, exitUsage)
		}
		if lines := strings.Count(errs, "\n"); lines != 1 || !strings.HasPrefix(errs, "mailtls: ") {
			t.Errorf("policy set %q: want a one-line error, got %q", args, errs)
		}
	}
	if got := c.overrides(); len(got) != 0 {
		t.Fatalf("invalid input stored something: %v", got)
	}
}

func TestPolicyLifecycle(t *testing.T) {
	c := newCLI(t)
	c.ok("policy", "set", "Example.COM", "ENCRYPT", "protocols=>=TLSv1.2", "--note", "forced")
	c.ok("policy", "set", ".corp.example", "verify", "match=hostname:nexthop")
	got := c.overrides()
	if len(got) != 2 {
		t.Fatalf("want 2 overrides, got %v", got)
	}
	byKey := map[string]map[string]any{}
	for _, o := range got {
		byKey[o["key"].(string)] = o
	}
	if p := byKey["example.com"]["policy"]; p != "encrypt protocols=>=TLSv1.2" {
		t.Errorf("example.com policy = %v", p)
	}
	if n := byKey["example.com"]["note"]; n != "forced" {
		t.Errorf("note = %v", n)
	}
	out := c.ok("lookup", "a.b.corp.example")
	if !strings.Contains(out, "verify match=hostname:nexthop") || !strings.Contains(out, "wildcard") {
		t.Errorf("lookup a.b.corp.example: %q", out)
	}
	out = c.ok("lookup", "corp.example")
	if !strings.Contains(out, "may") || !strings.Contains(out, "default") {
		t.Errorf("lookup corp.example: %q", out)
	}
	c.ok("policy", "set", "example.com", "secure", "match=.example.com")
	c.ok("policy", "rm", "example.com")
	if _, errs, code := c.run("", "policy", "rm", "example.com"); code == 0 || !strings.Contains(errs, "no override") {
		t.Errorf("second rm: exit %d %q", code, errs)
	}
	var hist []map[string]any
	if err := json.Unmarshal([]byte(c.ok("policy", "history", "example.com", "--format", "json")), &hist); err != nil {
		t.Fatal(err)
	}
	if len(hist) != 3 {
		t.Fatalf("history: want 3 changes, got %v", hist)
	}
	// Newest first: removal, change, creation.
	if hist[0]["new"] != nil || hist[0]["old"] != "secure match=.example.com" {
		t.Errorf("removal entry: %v", hist[0])
	}
	if hist[2]["old"] != nil || hist[2]["new"] != "encrypt protocols=>=TLSv1.2" || hist[2]["actor"] != "tester" {
		t.Errorf("creation entry: %v", hist[2])
	}
}

func TestPolicyImportExport(t *testing.T) {
	c := newCLI(t)
	good := "# migrated\nexample.com encrypt\n.Corp.Example   verify\n   match=hostname:nexthop\n[mx.example.net]:587 encrypt protocols=>=TLSv1.2\n\n"
	if _, errs, code := c.run(good, "policy", "import", "-"); code != 0 {
		t.Fatalf("import: %d %s", code, errs)
	}
	out := c.ok("policy", "export")
	for _, want := range []string{"example.com", ".corp.example", "verify match=hostname:nexthop", "[mx.example.net]:587", "encrypt protocols=>=TLSv1.2"} {
		if !strings.Contains(out, want) {
			t.Errorf("export lacks %q:\n%s", want, out)
		}
	}
	// Re-importing the export changes nothing and round-trips.
	if _, errs, code := c.run(out, "policy", "import", "-"); code != 0 {
		t.Fatalf("re-import of export: %d %s", code, errs)
	}
	// One bad line rejects the whole file, naming the line.
	c2 := newCLI(t)
	bad := "good.example encrypt\nbad.example encrpyt\nother.example may match=x\n"
	_, errs, code := c2.run(bad, "policy", "import", "-")
	if code != exitUsage || !strings.Contains(errs, "line 2") || !strings.Contains(errs, "line 3") || strings.Count(errs, "\n") != 1 {
		t.Fatalf("bad import: exit %d, %q", code, errs)
	}
	if got := c2.overrides(); len(got) != 0 {
		t.Fatalf("partial import stored %v", got)
	}
}

func TestUsageErrors(t *testing.T) {
	c := newCLI(t)
	for _, args := range [][]string{
		{"nosuchcommand"},
		{"policy", "nosuch"},
		{"report", "--format", "xml"},
		{"report", "--by", "color"},
		{"report", "--since", "yesterday-ish"},
		{"deliveries", "--format", "yaml"},
		{"serve", "--socketmap", "0.0.0.0:8470"},
		{"serve", "--default", "bogus"},
		{"lookup"},
		{"import", "/nonexistent/mail.log"},
	} {
		_, errs, code := c.run("", args...)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want %d (stderr %q)", args, code, exitUsage, errs)
		}
		if strings.Count(errs, "\n") != 1 {
			t.Errorf("%q: want one stderr line, got %q", args, errs)
		}
	}
}

func TestReorderArgs(t *testing.T) {
	app := newApp(env{getenv: func(string) string { return "" }})
	got := cliargs.Reorder(app, []string{"mailtls", "policy", "set", "example.com", "encrypt", "--note", "x y", "--dry-run", "protocols=>=TLSv1.2"})
	want := []string{"mailtls", "policy", "set", "--note", "x y", "--dry-run", "example.com", "encrypt", "protocols=>=TLSv1.2"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	got = cliargs.Reorder(app, []string{"mailtls", "--db", "x.db", "report", "--since", "7d", "downgrades", "--format", "json"})
	want = []string{"mailtls", "report", "downgrades", "--db", "x.db", "--since", "7d", "--format", "json"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestDBFlagAnywhere(t *testing.T) {
	c := newCLI(t)
	other := filepath.Join(t.TempDir(), "other.db")
	c.ok("policy", "set", "example.com", "encrypt", "--db", other)
	c.ok("--db", other, "policy", "set", "example.org", "encrypt")
	if got := c.overrides(); len(got) != 0 {
		t.Fatalf("--db ignored: default database got %v", got)
	}
	out := c.ok("policy", "list", "--db", other)
	if !strings.Contains(out, "example.com") || !strings.Contains(out, "example.org") {
		t.Fatalf("--db %s: %q", other, out)
	}
}

// daemonProc is `mailtls serve` running in-process.
type daemonProc struct {
	cancel    context.CancelFunc
	done      chan int
	socketmap string
	tcp       string
	http      string // "" unless started with --http
}

var listenRE = regexp.MustCompile(`(socketmap|tcp_table|http)=tcp:(127\.0\.0\.1:\d+)`)

// startServe runs `mailtls serve` on ephemeral ports and waits for its
// start-up log line, which names the bound addresses.
func startServe(t *testing.T, c *cliT, extra ...string) *daemonProc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	d := &daemonProc{cancel: cancel, done: make(chan int, 1)}
	args := append([]string{"mailtls", "serve", "--socketmap", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--http", "", "--reload-every", "100ms"}, extra...)
	if !slices.Contains(extra, "--resolver") && !slices.Contains(extra, "--sources") {
		// The default sources consult DNS: give them an empty loopback
		// zone, so that tests run the default configuration and no query
		// leaves the machine.
		args = append(args, "--resolver", testnet.StartDNS(t, testnet.NewZone()))
	}
	go func() {
		code := Run(ctx, args, env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: pw, getenv: c.getenv})
		pw.Close()
		d.done <- code
	}()
	ready := make(chan struct{})
	var once sync.Once
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "started") {
				for _, m := range listenRE.FindAllStringSubmatch(line, -1) {
					switch m[1] {
					case "socketmap":
						d.socketmap = m[2]
					case "tcp_table":
						d.tcp = m[2]
					default:
						d.http = m[2]
					}
				}
				once.Do(func() { close(ready) })
			}
		}
		once.Do(func() { close(ready) })
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not start within 20s")
	}
	if d.socketmap == "" || d.tcp == "" {
		t.Fatal("serve did not report its listeners")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-d.done:
			if code != 0 {
				t.Errorf("serve exited %d after SIGTERM-equivalent", code)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10s")
		}
	})
	return d
}

// eventually polls the real state until it matches or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for {
		ok, got := f()
		if ok {
			return
		}
		last = got
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s (last: %q)", what, within, last)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

func TestServeWithPostmap(t *testing.T) {
	c := newCLI(t)
	c.ok("policy", "set", ".corp.example", "verify", "match=hostname:nexthop")
	c.ok("policy", "set", "[mx.example.com]:587", "encrypt", "protocols=>=TLSv1.2")
	c.ok("policy", "set", "bücher.example", "encrypt")
	d := startServe(t, c)
	maps := map[string]string{
		"socketmap": "socketmap:inet:" + d.socketmap + ":tlspolicy",
		"tcp":       "tcp:" + d.tcp,
	}
	for name, m := range maps {
		t.Run(name, func(t *testing.T) {
			for key, want := range map[string]string{
				"example.com":               "may",
				"a.b.corp.example":          "verify match=hostname:nexthop",
				"A.B.CORP.EXAMPLE":          "verify match=hostname:nexthop",
				"corp.example":              "may",
				"[mx.example.com]:587":      "encrypt protocols=>=TLSv1.2",
				"[MX.example.com]:587":      "encrypt protocols=>=TLSv1.2",
				"[mx.example.com]:25":       "may",
				"xn--bcher-kva.example":     "encrypt",
				"sub.xn--bcher-kva.example": "may",
			} {
				got, code := servetest.PostmapQ(t, key, m)
				if code != 0 || got != want {
					t.Errorf("postmap -q %s: %q (exit %d), want %q", key, got, code, want)
				}
			}
		})
	}
	// A CLI change is served within 2 s, with no restart and no signal.
	c.ok("policy", "set", "example.com", "encrypt")
	start := time.Now()
	for _, m := range maps {
		eventually(t, 2*time.Second-time.Since(start), "encrypt served", func() (bool, string) {
			got, _ := servetest.PostmapQ(t, "example.com", m)
			return got == "encrypt", got
		})
	}
	// Uppercase key hits the same override.
	if got, _ := servetest.PostmapQ(t, "EXAMPLE.COM", maps["socketmap"]); got != "encrypt" {
		t.Errorf("uppercase key: %q", got)
	}
	// Unknown map name: Postfix gets PERM, which postmap reports as an error.
	if _, err := exec.Command("postmap", "-q", "example.com", "socketmap:inet:"+d.socketmap+":othermap").Output(); err == nil {
		t.Error("unknown map name was answered")
	}
}

func TestServeExpiredAndNotfound(t *testing.T) {
	c := newCLI(t)
	c.ok("policy", "set", "soon.example", "encrypt", "--expires", "1s")
	c.ok("policy", "set", "kept.example", "encrypt")
	d := startServe(t, c, "--default", "notfound")
	m := "socketmap:inet:" + d.socketmap + ":tlspolicy"
	if got, code := servetest.PostmapQ(t, "kept.example", m); code != 0 || got != "encrypt" {
		t.Fatalf("kept.example: %q %d", got, code)
	}
	// With --default notfound, a key without override is NOTFOUND: postmap exits 1.
	if got, code := servetest.PostmapQ(t, "other.example", m); code != 1 || got != "" {
		t.Fatalf("notfound: %q exit %d, want exit 1", got, code)
	}
	if got, code := servetest.PostmapQ(t, "other.example", "tcp:"+d.tcp); code != 1 || got != "" {
		t.Fatalf("notfound over tcp: %q exit %d, want exit 1", got, code)
	}
	// The 1 s override expires without any change to the database.
	eventually(t, 5*time.Second, "override expires", func() (bool, string) {
		got, code := servetest.PostmapQ(t, "soon.example", m)
		return code == 1, got
	})
	out := c.ok("lookup", "soon.example")
	if !strings.Contains(out, "expired") {
		t.Errorf("lookup of expired override: %q", out)
	}
}

func TestServeUnixSocket(t *testing.T) {
	c := newCLI(t)
	c.ok("policy", "set", "example.com", "encrypt")
	sock := filepath.Join(t.TempDir(), "policy.sock")
	startServe(t, c, "--unix", sock, "--unix-group", "postfix")
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o660 {
		t.Errorf("socket mode %o, want 660", perm)
	}
	g, err := user.LookupGroup("postfix")
	if err != nil {
		t.Fatal(err)
	}
	if gid := fmt.Sprint(fi.Sys().(*syscall.Stat_t).Gid); gid != g.Gid {
		t.Errorf("socket group %s, want postfix (%s)", gid, g.Gid)
	}
	if got, code := servetest.PostmapQ(t, "Example.com", "socketmap:unix:"+sock+":tlspolicy"); code != 0 || got != "encrypt" {
		t.Errorf("postmap over unix socket: %q exit %d", got, code)
	}
}
