package conffile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSet: default = notfound replaces the setting, keeps every
// other line, is idempotent, and creates a missing file.
func TestSet(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mailtls.conf")
	orig := "# mailtls\ndb = /var/lib/mailtls/mailtls.db\n#default = encrypt\ndefault = may\nlog-level = info\ndefault=\"may\"\nkeep = 400d"
	if err := os.WriteFile(p, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	want := "# mailtls\ndb = /var/lib/mailtls/mailtls.db\n#default = encrypt\ndefault = notfound\nlog-level = info\nkeep = 400d\n"
	for i := 0; i < 2; i++ {
		if err := Set(p, "default", "notfound"); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		if string(b) != want {
			t.Fatalf("after set #%d:\n%s\nwant:\n%s", i+1, b, want)
		}
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 kept", fi.Mode())
	}
	if v, ok, err := Value(p, "default"); err != nil || !ok || v != "notfound" {
		t.Errorf("Value = %q %v %v", v, ok, err)
	}
	if vals, err := Read(p, map[string]bool{"db": true, "default": true, "log-level": true, "keep": true}); err != nil || vals["default"] != "notfound" || vals["keep"] != "400d" {
		t.Errorf("Read after set: %v %v", vals, err)
	}
	np := filepath.Join(dir, "sub", "new.conf")
	if err := Set(np, "default", "notfound"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(np); string(b) != "default = notfound\n" {
		t.Errorf("new file: %q", b)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func FuzzSet(f *testing.F) {
	for _, s := range []string{"", "default = may\n", "# default = x\ndb=/x", "default\n", "default = 'may'\nkeep 4d", "\x00", "default=a\ndefault=b\n"} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, s string) {
		p := filepath.Join(dir, "c.conf")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := Set(p, "default", "notfound"); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := Value(p, "default"); err != nil || !ok || v != "notfound" {
			t.Fatalf("after set on %q: %q %v %v", s, v, ok, err)
		}
		b, _ := os.ReadFile(p)
		// Every line that does not set default is kept, in order.
		var kept []string
		for _, l := range strings.Split(string(b), "\n") {
			if n, _ := SplitLine(strings.TrimSpace(l)); n != "default" || strings.HasPrefix(strings.TrimSpace(l), "#") {
				kept = append(kept, strings.TrimRight(l, "\r"))
			}
		}
		var want []string
		for _, l := range strings.Split(s, "\n") {
			if n, _ := SplitLine(strings.TrimSpace(l)); n != "default" || strings.HasPrefix(strings.TrimSpace(l), "#") {
				want = append(want, strings.TrimRight(l, "\r"))
			}
		}
		if strings.TrimSuffix(strings.Join(kept, "\n"), "\n") != strings.TrimSuffix(strings.Join(want, "\n"), "\n") {
			t.Fatalf("set on %q gave %q", s, b)
		}
	})
}

// TestLoadAndBool: a named file must exist and is read as Read reads it;
// yes and no become true and false, other values stay.
func TestLoadAndBool(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mailtls.conf")
	if _, _, err := Load(p, nil); !os.IsNotExist(err) {
		t.Fatalf("missing named file: err %v, want not exist", err)
	}
	if err := os.WriteFile(p, []byte("tlsrpt = Yes\nlog = /x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file, vals, err := Load(p, map[string]bool{"tlsrpt": true, "log": true})
	if err != nil || file != p || vals["tlsrpt"] != "Yes" || vals["log"] != "/x" {
		t.Fatalf("Load = %q, %v, %v", file, vals, err)
	}
	for in, want := range map[string]string{"yes": "true", "NO": "false", "true": "true", "maybe": "maybe"} {
		if got := Bool(in); got != want {
			t.Errorf("Bool(%q) = %q, want %q", in, got, want)
		}
	}
}
