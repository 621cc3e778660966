package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"24h":                       now.Add(-24 * time.Hour),
		"7d":                        now.Add(-7 * 24 * time.Hour),
		"2w":                        now.Add(-14 * 24 * time.Hour),
		"1d12h":                     now.Add(-36 * time.Hour),
		"2026-11-01T10:00:00Z":      time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC),
		"2026-11-01T10:00:00+02:00": time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC),
		"now":                       now,
	} {
		got, err := parseWhen(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "7x", "-3d", "d", "2026-13-01", "1e9d"} {
		if _, err := parseWhen(bad, now); err == nil {
			t.Errorf("parseWhen(%q) accepted", bad)
		}
	}
}

func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{"24h", "7d", "1d12h", "2026-11-01", "2026-11-01T10:00:00Z", "99999999999d", "-1h", "d", "\x00"} {
		f.Add(s)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseWhen(s, now)
		if err == nil && got.IsZero() {
			t.Fatalf("parseWhen(%q) accepted a zero time", s)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error %q", err)
		}
	})
}

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
		vals, err := readConfig(p, known)
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
