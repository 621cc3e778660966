package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/bench/gen"
)

// TestHostSettings: --host and the config file's host = name the fleet
// host that import stores as; report --by host, status and deliveries
// show and select hosts.
func TestHostSettings(t *testing.T) {
	c := newCLI(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "mail.log")
	var buf bytes.Buffer
	truth, err := gen.Log(&buf, gen.LogConfig{Seed: 5, Lines: 1500, Start: time.Now().Add(-30 * time.Hour).UTC().Truncate(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "mailtls.conf")
	if err := os.WriteFile(cfg, []byte("host = MX9.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.ok("import", "--quiet", "--config", cfg, logPath)
	c.ok("import", "--quiet", "--config", cfg, "--host", "other", logPath) // the flag wins

	hostsOf := func(args ...string) map[string]int {
		t.Helper()
		out := map[string]int{}
		for _, line := range strings.Split(strings.TrimSpace(c.ok(append([]string{"deliveries"}, args...)...)), "\n") {
			var d struct{ Host string }
			if err := json.Unmarshal([]byte(line), &d); err != nil {
				t.Fatalf("deliveries: %q: %v", line, err)
			}
			out[d.Host]++
		}
		return out
	}
	n := len(truth.Deliveries)
	if got := hostsOf(); len(got) != 2 || got["mx9.example"] != n || got["other"] != n {
		t.Fatalf("deliveries by host: %v, want mx9.example and other with %d each", got, n)
	}
	if got := hostsOf("--host", "OTHER"); len(got) != 1 || got["other"] != n {
		t.Errorf("deliveries --host OTHER: %v, want other's %d only", got, n)
	}

	out := c.ok("report", "--by", "host", "--since", "7d")
	if !strings.Contains(out, "TLS coverage by host") || !strings.Contains(out, "mx9.example") || !strings.Contains(out, "other") {
		t.Errorf("report --by host:\n%s", out)
	}
	var one, all struct{ Deliveries int64 }
	if err := json.Unmarshal([]byte(c.ok("report", "--host", "other", "--since", "7d", "--format", "json")), &one); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(c.ok("report", "--since", "7d", "--format", "json")), &all); err != nil {
		t.Fatal(err)
	}
	if one.Deliveries == 0 || all.Deliveries != 2*one.Deliveries {
		t.Errorf("report --host other: %d sent; the fleet %d, want twice as many", one.Deliveries, all.Deliveries)
	}
	if !strings.Contains(c.ok("report", "--host", "other", "--since", "7d"), "host other") {
		t.Errorf("report --host other does not say which host it covers")
	}

	st := c.ok("status")
	for _, h := range []string{"mx9.example", "other"} {
		if !strings.Contains(st, "Host        "+h+": ") || !strings.Contains(st, "no follower commit") {
			t.Errorf("status does not list host %s (imported, no follower):\n%s", h, st)
		}
	}
	var sj struct {
		Hosts []struct {
			Name       string
			Deliveries int64
			Lag        int64 `json:"lag_seconds"`
		}
	}
	if err := json.Unmarshal([]byte(c.ok("status", "--host", "mx9.example", "--format", "json")), &sj); err != nil {
		t.Fatal(err)
	}
	if len(sj.Hosts) != 1 || sj.Hosts[0].Name != "mx9.example" || sj.Hosts[0].Deliveries != int64(n) || sj.Hosts[0].Lag != -1 {
		t.Errorf("status --host mx9.example: %+v, want that host with %d deliveries and no commit", sj.Hosts, n)
	}
	if _, errs, code := c.run("", "status", "--host", "nosuch"); code != 1 || !strings.Contains(errs, `no fleet host "nosuch"`) {
		t.Errorf("status --host nosuch: exit %d, %q; want 1 and a one-line error", code, errs)
	}
	for _, args := range [][]string{
		{"report", "--format", "html", "--host", "other"},
		{"report", "--host", "two words"},
		{"status", "--host", "x/y"},
		{"import", "--config", filepath.Join(dir, "bad.conf"), logPath},
	} {
		if args[0] == "import" {
			if err := os.WriteFile(args[2], []byte("host = a..b\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, errs, code := c.run("", args...); code != exitUsage || strings.Count(errs, "\n") != 1 {
			t.Errorf("mailtls %s: exit %d, %q; want %d and a one-line error", strings.Join(args, " "), code, errs, exitUsage)
		}
	}
}
