//go:build linux

package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPostfixConfig reads a real Postfix configuration with an existing
// policy map and TLS logging off, warns about the logging, and --apply
// puts mailtls first (answering NOTFOUND without an override, so that the
// existing map still decides) with postconf -e.
func TestPostfixConfig(t *testing.T) {
	t.Parallel()
	pf := StartPostfix(t, Config{
		PolicyMaps: "texthash:$config_directory/tls_policy",
		Files:      map[string]string{"tls_policy": "legacy.test encrypt\n"},
		Main:       map[string]string{"smtp_tls_loglevel": "0"},
	})
	bin := mailtlsBin(t)
	conf := filepath.Join(t.TempDir(), "mailtls.conf")
	run := func(args ...string) (string, string) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"postfix-config", "--config-dir", pf.ConfigDir(), "--config", conf}, args...)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("postfix-config %v: %v: %s", args, err, errb.String())
		}
		return out.String(), errb.String()
	}
	out, warn := run()
	if !strings.Contains(warn, "smtp_tls_loglevel = 0") {
		t.Errorf("missing warning: %q", warn)
	}
	merged := "smtp_tls_policy_maps = socketmap:inet:127.0.0.1:8470:tlspolicy, texthash:$config_directory/tls_policy"
	if !strings.Contains(out, merged) || !strings.Contains(out, "smtp_tls_loglevel = 1") ||
		!strings.Contains(out, "# existing smtp_tls_policy_maps texthash:$config_directory/tls_policy: mailtls goes first") {
		t.Errorf("printed lines:\n%s", out)
	}
	run("--apply")
	for param, want := range map[string]string{
		"smtp_tls_policy_maps": "socketmap:inet:127.0.0.1:8470:tlspolicy, texthash:$config_directory/tls_policy",
		"smtp_tls_loglevel":    "1",
	} {
		got, err := exec.Command("postconf", "-c", pf.ConfigDir(), "-h", param).Output()
		if err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("after --apply, %s = %q (%v), want %q", param, got, err, want)
		}
	}
	if b, err := os.ReadFile(conf); err != nil || string(b) != "default = notfound\n" {
		t.Errorf("mailtls config after --apply: %q, %v", b, err)
	}
	// Applying again finds nothing left to add.
	out, _ = run()
	if !strings.Contains(out, "already wired") {
		t.Errorf("second run: %q", out)
	}
}
