package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/conffile"
)

func TestConfigFile(t *testing.T) {
	c := newCLI(t)
	conf := filepath.Join(t.TempDir(), "mailtls.conf")
	if err := os.WriteFile(conf, []byte("# comment\nsocketmap = 0.0.0.0:8470\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A value from the config file is validated like the flag.
	_, errs, code := c.run("", "serve", "--config", conf, "--tcp", "")
	if code != exitUsage || !strings.Contains(errs, "not a loopback address") {
		t.Fatalf("config socketmap = 0.0.0.0: exit %d %q", code, errs)
	}
	if err := os.WriteFile(conf, []byte("sokcetmap = 127.0.0.1:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, code = c.run("", "serve", "--config", conf)
	if code != exitUsage || !strings.Contains(errs, `unknown setting "sokcetmap"`) || !strings.Contains(errs, ":1:") {
		t.Fatalf("typo in config: exit %d %q", code, errs)
	}
	// A boolean takes yes or no, as in main.cf.
	if err := os.WriteFile(conf, []byte("tlsrpt-attributes = maybe\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, code = c.run("", "serve", "--config", conf)
	if code != exitUsage || !strings.Contains(errs, `tlsrpt-attributes = "maybe": want yes or no`) || strings.Count(errs, "\n") != 1 {
		t.Fatalf("tlsrpt-attributes = maybe: exit %d %q", code, errs)
	}
	_, errs, code = c.run("", "serve", "--config", filepath.Join(t.TempDir(), "missing.conf"))
	if code != exitUsage || strings.Count(errs, "\n") != 1 {
		t.Fatalf("missing explicit config: exit %d %q", code, errs)
	}
}

func FuzzReadConfig(f *testing.F) {
	for _, s := range []string{"db = /x\n", "# c\nlog /var/log/mail.log\n", "journal\n", "default = 'may'\n", "= x\n", "\x00=\n"} {
		f.Add(s)
	}
	known := map[string]bool{"db": true, "log": true, "journal": true, "default": true}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, s string) {
		p := filepath.Join(dir, "c.conf")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		vals, err := conffile.Read(p, known)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		for k := range vals {
			if !known[k] {
				t.Fatalf("accepted unknown setting %q", k)
			}
		}
	})
}
