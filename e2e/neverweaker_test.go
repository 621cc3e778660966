//go:build linux

package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNeverWeakerThanPostfix starts from a main.cf with
// smtp_tls_security_level = encrypt and an existing hash: policy table,
// follows the README's "Wire it into Postfix" steps (start mailtls,
// postfix-config --apply, reload mailtls, postfix reload, an override) and
// checks with real deliveries that adding mailtls weakened nothing:
//   - an unknown destination still gets encrypt (deferred: TLS not offered);
//   - a subdomain of a .parent entry of the old table still gets its
//     policy (verify: deferred, certificate not verified);
//   - a mailtls override still wins over the old table (sent with TLS).
func TestNeverWeakerThanPostfix(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pf := StartPostfix(t, Config{
		PolicyMaps: "hash:$config_directory/tls_policy",
		Files: map[string]string{"tls_policy": "# the operator's table before mailtls\n" +
			".old.test verify\n" +
			"tls.test verify\n"},
		Hosts: map[string]string{"sub.old.test": string(ReceiverTLS)},
		Main:  map[string]string{"smtp_tls_security_level": "encrypt"},
	})
	if out, errOut, err := pf.run(30*time.Second, "postmap", "-c", pf.ConfigDir(), "hash:"+filepath.Join(pf.ConfigDir(), "tls_policy")); err != nil {
		t.Fatalf("postmap hash: %v %s%s", err, out, errOut)
	}
	pf.Reconfigure(map[string]string{"smtp_tls_loglevel": "1"}) // picks up the .db

	// Step 2 of the README: mailtls runs, with its config file.
	m := newMailtlsRun(t, pf.LogPath())
	conf := filepath.Join(t.TempDir(), "mailtls.conf")
	if err := os.WriteFile(conf, []byte("# local settings\nlog-level = info\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	m.args = []string{"run", "--db", m.db, "--log", pf.LogPath(), "--socketmap", m.smap, "--tcp", m.tcp,
		"--poll", "100ms", "--reload-every", "200ms", "--config", conf, "--http", ""}
	m.env = append(cleanEnv(), "MAIL_CONFIG="+pf.ConfigDir())
	m.start()
	// Started with the built-in default (may) under main.cf's encrypt: it says so.
	waitFor(t, "weaker-default warning", 10*time.Second, func() bool {
		l := m.log.String()
		return strings.Contains(l, "default answer may is weaker than main.cf smtp_tls_security_level = encrypt") &&
			strings.Contains(l, "smtp_tls_policy_maps also lists hash:$config_directory/tls_policy")
	})

	// Step 3: postfix-config prints one line per decision, then --apply.
	pfc := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(m.bin, append([]string{"postfix-config", "--config-dir", pf.ConfigDir(),
			"--socketmap", m.smap, "--config", conf}, args...)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("postfix-config %v: %v: %s", args, err, errb.String())
		}
		return out.String()
	}
	ours := "socketmap:inet:" + m.smap + ":tlspolicy"
	out := pfc()
	for _, want := range []string{
		"# smtp_tls_security_level = encrypt is stronger than may: mailtls answers NOTFOUND",
		"# existing smtp_tls_policy_maps hash:$config_directory/tls_policy: mailtls goes first",
		"# " + conf + ": default = notfound (was may)",
		"smtp_tls_policy_maps = " + ours + ", hash:$config_directory/tls_policy\n",
		"\ndefault = notfound\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("postfix-config output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "smtp_tls_security_level = may") {
		t.Errorf("postfix-config lowers the level:\n%s", out)
	}
	pfc("--apply")
	for param, want := range map[string]string{
		"smtp_tls_policy_maps":    ours + ", hash:$config_directory/tls_policy",
		"smtp_tls_security_level": "encrypt",
	} {
		got, err := exec.Command("postconf", "-c", pf.ConfigDir(), "-h", param).Output()
		if err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("after --apply, %s = %q (%v), want %q", param, got, err, want)
		}
	}
	if b, _ := os.ReadFile(conf); string(b) != "# local settings\nlog-level = info\ndefault = notfound\n" {
		t.Errorf("mailtls config after --apply:\n%s", b)
	}
	if out := pfc(); !strings.Contains(out, "already wired") {
		t.Errorf("postfix-config after --apply is not idempotent:\n%s", out)
	}

	// systemctl reload mailtls (SIGHUP), then postfix reload.
	if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "default reloaded", 10*time.Second, func() bool {
		return strings.Contains(m.log.String(), `msg="default answer updated" default=notfound`)
	})
	pf.Reconfigure(map[string]string{"smtp_tls_loglevel": "1"})

	// Step 4: an override, checked with Postfix's own client.
	m.cli("policy", "set", "tls.test", "encrypt")
	waitFor(t, "override served", 5*time.Second, func() bool { out, _ := pf.Postmap("tls.test", ours); return out == "encrypt" })
	if out, code := pf.Postmap("plain.test", ours); code != 1 {
		t.Errorf("postmap -q plain.test %s = %q (exit %d), want NOTFOUND", ours, out, code)
	}
	// Postfix's own parent-domain query for sub.old.test: mailtls has
	// nothing, so the old table answers.
	if out, code := pf.Postmap(".old.test", ours); code != 1 {
		t.Errorf("postmap -q .old.test %s = %q (exit %d), want NOTFOUND", ours, out, code)
	}
	if out, code := pf.Postmap(".old.test", "hash:"+filepath.Join(pf.ConfigDir(), "tls_policy")); code != 0 || out != "verify" {
		t.Errorf("postmap -q .old.test in the old table = %q (exit %d), want verify", out, code)
	}

	// Real deliveries show the level in force.
	qUnknown := pf.Send("sender@e2e.test", "u@plain.test", "unknown destination")
	qParent := pf.Send("sender@e2e.test", "p@sub.old.test", "subdomain of .old.test")
	qOverride := pf.Send("sender@e2e.test", "o@tls.test", "mailtls override")
	for _, c := range []struct{ what, qid, want string }{
		{"unknown destination under encrypt", qUnknown, "status=deferred (TLS is required, but was not offered by host plain.test"},
		{"subdomain of the old table's .old.test verify", qParent, "status=deferred (Server certificate not verified)"},
		{"mailtls override encrypt over the old table's verify", qOverride, "status=sent"},
	} {
		line, err := pf.WaitLog(ctx, func(l string) bool {
			return strings.Contains(l, c.qid+": to=") && strings.Contains(l, "status=")
		})
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if !strings.Contains(line, c.want) {
			t.Errorf("%s: got %q, want %q", c.what, line, c.want)
		}
	}
	if _, err := pf.WaitLog(ctx, LineContains("TLS connection established to tls.test")); err != nil {
		t.Errorf("override: tls.test not delivered over TLS: %v", err)
	}
	m.stop()
}
