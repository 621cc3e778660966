package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/pgtest"
	"github.com/mailtls/mailtls/internal/servetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// pgPassword is put in the DSNs of these tests: the cluster trusts local
// connections, so it is accepted and ignored, and must show nowhere.
const pgPassword = "Hunter2-not-shown"

// newPGCLI is newCLI on a fresh PostgreSQL database, with a password in
// the DSN.
func newPGCLI(t *testing.T) *cliT {
	t.Helper()
	dsn := strings.Replace(pgtest.DSN(t), "postgres://mailtls@", "postgres://mailtls:"+pgPassword+"@", 1)
	return &cliT{t: t, db: dsn}
}

// TestPostgresCommands runs the commands against PostgreSQL with --db
// (MAILTLS_DB): the same answers as on SQLite, and the password nowhere.
func TestPostgresCommands(t *testing.T) {
	c := newPGCLI(t)
	var all strings.Builder
	ok := func(args ...string) string {
		t.Helper()
		out, errs, code := c.run("", args...)
		all.WriteString(out + errs)
		if code != 0 {
			t.Fatalf("mailtls %s: exit %d, stderr %q", strings.Join(args, " "), code, errs)
		}
		return out
	}
	ok("policy", "set", "example.com", "encrypt", "protocols=>=TLSv1.2")
	ok("policy", "set", ".corp.example", "verify")
	ok("policy", "set", "example.com", "secure")
	if got := c.overrides(); len(got) != 2 {
		t.Errorf("policy list: %d overrides, want 2: %v", len(got), got)
	}
	if h := ok("policy", "history", "example.com"); strings.Count(h, "tester") < 2 || !strings.Contains(h, "secure") {
		t.Errorf("policy history: %q", h)
	}
	ok("policy", "rm", ".corp.example")

	// import, then the reports and listings of what it stored.
	log := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(log, []byte(tlsLine+sentLine+plainOne), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := ok("import", log); !strings.Contains(out, "2 deliveries stored") {
		t.Errorf("import: %q", out)
	}
	if out := ok("import", log); !strings.Contains(out, "0 deliveries stored (2 already present)") {
		t.Errorf("second import: %q", out)
	}
	if n := countLines(ok("deliveries")); n != 2 {
		t.Errorf("deliveries: %d lines, want 2", n)
	}
	var rep struct {
		Summary struct {
			Deliveries int `json:"deliveries"`
			Encrypted  int `json:"encrypted"`
			Plaintext  int `json:"plaintext"`
		}
	}
	out := ok("report", "--since", "2026-11-19", "--until", "2026-11-21", "--format", "json")
	if err := json.Unmarshal([]byte(out), &rep.Summary); err != nil {
		t.Fatalf("report json: %v: %s", err, out)
	}
	if rep.Summary.Deliveries != 2 || rep.Summary.Encrypted != 1 || rep.Summary.Plaintext != 1 {
		t.Errorf("report summary %+v, want 2 deliveries, 1 encrypted, 1 plaintext", rep.Summary)
	}
	ok("report", "--since", "2026-11-19", "--until", "2026-11-21", "--by", "domain")
	ok("tlsrpt", "show", "--date", "2026-11-20")
	if out := ok("prune", "--older-than", "5d"); !strings.Contains(out, "Deleted 2 deliveries") {
		t.Errorf("prune: %q", out)
	}
	st := ok("status", "--format", "json")
	var status struct {
		DB string `json:"db"`
	}
	if err := json.Unmarshal([]byte(st), &status); err != nil {
		t.Fatalf("status json: %v: %s", err, st)
	}
	if !strings.HasPrefix(status.DB, "postgres://mailtls:xxxxx@/") {
		t.Errorf("status shows the database as %q, want the DSN with the password redacted", status.DB)
	}
	if strings.Contains(all.String(), pgPassword) {
		t.Errorf("the password appears in the output of the commands")
	}
}

// TestPostgresBadDSN: a bad DSN is a one-line usage error naming the part,
// an unreachable server an error without the password.
func TestPostgresBadDSN(t *testing.T) {
	for _, c := range []struct{ dsn, part string }{
		{"postgress://u:" + pgPassword + "@127.0.0.1/db", "scheme"},
		{"postgres://u:" + pgPassword + "@127.0.0.1:70000/db", "port"},
		{"postgres://u:" + pgPassword + "@127.0.0.1/db?sslmode=sometimes", "sslmode"},
	} {
		cl := &cliT{t: t, db: c.dsn}
		_, errs, code := cl.run("", "status")
		if code != exitUsage || countLines(errs) != 1 || !strings.Contains(errs, c.part) || strings.Contains(errs, pgPassword) {
			t.Errorf("--db %s: exit %d, stderr %q; want a one-line usage error naming %s, without the password", c.dsn, code, errs, c.part)
		}
	}
	// Nothing listens on port 1 of loopback.
	cl := &cliT{t: t, db: "postgres://u:" + pgPassword + "@127.0.0.1:1/db?sslmode=disable&connect_timeout=5"}
	out, errs, code := cl.run("", "status")
	if code == 0 || !strings.Contains(errs, "xxxxx") || strings.Contains(out+errs, pgPassword) {
		t.Errorf("unreachable server: exit %d, stderr %q; want a failure naming the DSN with the password redacted", code, errs)
	}
}

// TestPostgresServeNotify: an override set by one mailtls process is served
// by a running daemon on the same database, announced by NOTIFY: the
// daemon polls only once an hour, so only the notification can bring it.
// The deadline is generous for a loaded machine; the test logs how long
// each change took (the 2 s is a figure for make bench).
func TestPostgresServeNotify(t *testing.T) {
	c := newPGCLI(t)
	c.ok("policy", "set", "example.com", "encrypt")
	d := startServe(t, c, "--reload-every", "1h", "--sources", "override")
	m := "socketmap:inet:" + d.socketmap + ":tlspolicy"
	if got, code := servetest.PostmapQ(t, "example.com", m); code != 0 || got != "encrypt" {
		t.Fatalf("postmap -q example.com: %q exit %d, want encrypt", got, code)
	}
	for i, want := range []string{"secure", "dane-only", "verify"} {
		c.ok("policy", "set", "example.com", want)
		start := time.Now()
		eventually(t, 10*time.Second, "change "+want+" served", func() (bool, string) {
			got, _ := servetest.PostmapQ(t, "example.com", m)
			return got == want, got
		})
		t.Logf("change %d served after %s", i+1, time.Since(start).Round(time.Millisecond))
	}
	c.ok("policy", "rm", "example.com")
	eventually(t, 10*time.Second, "removal served", func() (bool, string) {
		got, _ := servetest.PostmapQ(t, "example.com", m)
		return got == "may", got
	})
}
