package cliargs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// runWith runs a one-command app with the config file text, and returns
// what the action saw and the error.
func runWith(t *testing.T, cf Config, text string, args ...string) (db, level string, tls bool, err error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mailtls.conf")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	app := &cli.App{Commands: []*cli.Command{{
		Name: "serve",
		Flags: []cli.Flag{&cli.StringFlag{Name: "config"}, &cli.StringFlag{Name: "db", Value: "def.db"},
			&cli.StringFlag{Name: "log-level", Value: "info"}, &cli.BoolFlag{Name: "tlsrpt"}},
		Action: func(c *cli.Context) error {
			if err := cf.Apply(c); err != nil {
				return err
			}
			db, level, tls = c.String("db"), c.String("log-level"), c.Bool("tlsrpt")
			return nil
		},
	}}}
	err = app.Run(append([]string{"mailtls", "serve", "--config", p}, args...))
	return db, level, tls, err
}

func TestConfigApply(t *testing.T) {
	cf := Config{Shared: []string{"tlsrpt-org"}}
	db, level, tls, err := runWith(t, cf, "db = x.db\nlog-level debug\ntlsrpt = yes\ntlsrpt-org = Example\n", "--log-level", "warn")
	if err != nil {
		t.Fatal(err)
	}
	if db != "x.db" || level != "warn" || !tls {
		t.Errorf("db %q level %q tlsrpt %v; want x.db from the file, warn from the flag, true from yes", db, level, tls)
	}

	cf.Getenv = func(n string) string { return map[string]string{"MAILTLS_DB": "env.db"}[n] }
	if db, _, _, err = runWith(t, cf, "db = x.db\n"); err != nil || db != "def.db" {
		t.Errorf("with MAILTLS_DB set: db %q, %v; want the file's db ignored (def.db)", db, err)
	}

	var ue *UsageError
	for text, want := range map[string]string{
		"tlsrpt = maybe\n": `tlsrpt = "maybe": want yes or no`,
		"dbb = x\n":        "dbb",
	} {
		_, _, _, err := runWith(t, Config{}, text)
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("config %q: error %v; want one-line usage error with %q", text, err, want)
		}
	}
}
