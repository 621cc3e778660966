package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/mailtls/mailtls/published"
	"github.com/mailtls/mailtls/store"
)

// TestConfigErrors: each bad setting is a *ConfigError worded as its
// flag's, which the commands turn into a usage error (exit 2).
func TestConfigErrors(t *testing.T) {
	ok := Config{Socketmap: "127.0.0.1:0", UnixMode: "0660"}
	for _, tc := range []struct {
		name string
		cfg  func(Config) Config
		want string
	}{
		{"mode", func(c Config) Config { c.UnixMode = "999"; return c }, `invalid --unix-mode "999" (want an octal mode such as 0660)`},
		{"mode text", func(c Config) Config { c.UnixMode = "rw"; return c }, `invalid --unix-mode "rw" (want an octal mode such as 0660)`},
		{"remote", func(c Config) Config { c.TCP = "0.0.0.0:8471"; return c }, `--tcp "0.0.0.0:8471" is not a loopback address; Postfix policy needs no remote access (pass --allow-remote to override)`},
		{"no port", func(c Config) Config { c.Socketmap = "localhost"; return c }, `--socketmap "localhost": address localhost: missing port in address (want HOST:PORT, e.g. 127.0.0.1:8470)`},
		{"none", func(c Config) Config { c.Socketmap = ""; return c }, "no listener configured (set --socketmap, --tcp, --unix or --tcp-unix)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg(ok)
			_, err := parseMode(cfg.UnixMode)
			if err == nil {
				_, err = listenSpecs(cfg)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || err.Error() != tc.want {
				t.Errorf("got %v (%T), want ConfigError %q", err, err, tc.want)
			}
		})
	}
	if specs, err := listenSpecs(Config{TCP: "192.0.2.1:8471", AllowRemote: true}); err != nil || len(specs) != 1 {
		t.Errorf("--allow-remote: %v, %v", specs, err)
	}
	for h, want := range map[HTTP]string{
		{Addr: "localhost"}:                                    `--http "localhost": address localhost: missing port in address (want HOST:PORT, e.g. 127.0.0.1:8472, or '' to disable)`,
		{Addr: "192.0.2.1:80"}:                                 `--http "192.0.2.1:80" is not a loopback address; the metrics and the report need no remote access (pass --allow-remote to override, behind a firewall or a reverse proxy)`,
		{Addr: "127.0.0.1:0", Domains: 1001}:                   "invalid --metrics-domains 1001 (want 0 to 1000)",
		{Addr: "192.0.2.1:80", AllowRemote: true, Domains: -1}: "invalid --metrics-domains -1 (want 0 to 1000)",
	} {
		var ce *ConfigError
		if _, err := NewMetrics(h, true, false); !errors.As(err, &ce) || err.Error() != want {
			t.Errorf("NewMetrics(%+v) = %v, want ConfigError %q", h, err, want)
		}
	}
	if m, err := NewMetrics(HTTP{}, true, true); m != nil || err != nil {
		t.Errorf("no --http: %v, %v", m, err)
	}
}

// TestStartStop: the daemon listens on every listener asked for (a unix
// socket with its mode), names them for the start-up line, is healthy
// once loaded, and stops twice without harm.
func TestStartStop(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "mailtls.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sock := filepath.Join(dir, "policy.sock")
	d, err := Start(ctx, st, Config{
		Default: "may", Published: published.Options{Sources: published.Sources{Override: true}},
		Socketmap: "127.0.0.1:0", TCP: "127.0.0.1:0", Unix: sock, UnixMode: "0600",
		HTTP: HTTP{Addr: "127.0.0.1:0"}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	re := `^socketmap=tcp:127\.0\.0\.1:\d+ tcp_table=tcp:127\.0\.0\.1:\d+ socketmap=unix:` + regexp.QuoteMeta(sock) + ` http=tcp:127\.0\.0\.1:\d+$`
	if l := d.Listeners(); !regexp.MustCompile(re).MatchString(l) {
		t.Errorf("Listeners() = %q, want %s", l, re)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("unix socket: %v, %v", fi, err)
	}
	d.warm.Wait()
	if err := health(d, nil); err != nil {
		t.Errorf("loaded: health = %v", err)
	}
	if err := d.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if err := d.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}
