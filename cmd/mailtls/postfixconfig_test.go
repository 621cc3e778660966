package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const testOurs = "socketmap:inet:127.0.0.1:8470:tlspolicy"

// TestPlanWiringNeverWeaker: whenever main.cf's level is above may or
// another policy table is listed, mailtls goes first with default
// notfound and smtp_tls_security_level is left alone.
func TestPlanWiringNeverWeaker(t *testing.T) {
	tests := []struct {
		name     string
		st       postfixState
		notfound bool
		maps     string // wanted smtp_tls_policy_maps setting; "" when unchanged
		level    string // wanted smtp_tls_security_level setting; "" when unchanged
	}{
		{"may alone", postfixState{level: "may", loglevel: "1"}, false, testOurs, ""},
		{"already wired", postfixState{level: "may", loglevel: "1", maps: []string{testOurs}}, false, "", ""},
		{"none", postfixState{level: "none", loglevel: "1"}, false, testOurs, ""},
		{"unset", postfixState{loglevel: "1"}, false, testOurs, "may"},
		{"encrypt", postfixState{level: "encrypt", loglevel: "1"}, true, testOurs, ""},
		{"dane", postfixState{level: "dane", loglevel: "1"}, true, testOurs, ""},
		{"dane-only", postfixState{level: "dane-only", loglevel: "1"}, true, testOurs, ""},
		{"verify", postfixState{level: "verify", loglevel: "1"}, true, testOurs, ""},
		{"secure", postfixState{level: "secure", loglevel: "1"}, true, testOurs, ""},
		{"typo level", postfixState{level: "encrpyt", loglevel: "1"}, true, testOurs, ""},
		{"may with table", postfixState{level: "may", loglevel: "1", maps: []string{"hash:/etc/postfix/tls_policy"}},
			true, testOurs + ", hash:/etc/postfix/tls_policy", ""},
		{"encrypt with tables", postfixState{level: "encrypt", loglevel: "1", maps: []string{"hash:/a", "texthash:/b"}},
			true, testOurs + ", hash:/a, texthash:/b", ""},
		{"old wiring, mailtls last", postfixState{level: "encrypt", loglevel: "1", maps: []string{"hash:/a", testOurs}},
			true, testOurs + ", hash:/a", ""},
		{"new wiring again", postfixState{level: "encrypt", loglevel: "1", maps: []string{testOurs, "hash:/a"}}, true, "", ""},
		{"duplicate entries", postfixState{level: "may", loglevel: "1", maps: []string{testOurs, "hash:/a", testOurs, "hash:/a"}},
			true, testOurs + ", hash:/a", ""},
	}
	for _, tt := range tests {
		w := planWiring(tt.st, testOurs)
		got := map[string]string{}
		for _, s := range w.settings {
			got[s[0]] = s[1]
		}
		if w.notfound != tt.notfound || got["smtp_tls_policy_maps"] != tt.maps || got["smtp_tls_security_level"] != tt.level {
			t.Errorf("%s: notfound %v, settings %v; want notfound %v, maps %q, level %q", tt.name, w.notfound, w.settings, tt.notfound, tt.maps, tt.level)
		}
		if len(w.decisions) == 0 {
			t.Errorf("%s: no decision line", tt.name)
		}
		for _, d := range w.decisions {
			if strings.Contains(d, "\n") {
				t.Errorf("%s: decision %q is not one line", tt.name, d)
			}
		}
		if tt.st.level != "" && levelWritten(w) {
			t.Errorf("%s: smtp_tls_security_level rewritten: %v", tt.name, w.settings)
		}
	}
}

func levelWritten(w wiring) bool {
	for _, s := range w.settings {
		if s[0] == "smtp_tls_security_level" {
			return true
		}
	}
	return false
}

func TestEffectiveLevel(t *testing.T) {
	for _, tt := range []struct {
		v    map[string]string
		want string
	}{
		{map[string]string{"smtp_tls_security_level": "Encrypt"}, "encrypt"},
		{map[string]string{"smtp_tls_security_level": "may", "smtp_enforce_tls": "yes"}, "may"},
		{map[string]string{"smtp_enforce_tls": "yes", "smtp_tls_enforce_peername": "yes"}, "verify"},
		{map[string]string{"smtp_enforce_tls": "yes", "smtp_tls_enforce_peername": "no"}, "encrypt"},
		{map[string]string{"smtp_use_tls": "yes"}, "may"},
		{map[string]string{"smtp_use_tls": "no"}, ""},
		{map[string]string{}, ""},
	} {
		if got := effectiveLevel(tt.v); got != tt.want {
			t.Errorf("effectiveLevel(%v) = %q, want %q", tt.v, got, tt.want)
		}
		// Legacy enforcement never gets smtp_tls_security_level = may on top.
		if w := planWiring(postfixState{level: effectiveLevel(tt.v), loglevel: "1"}, testOurs); tt.want != "" && levelWritten(w) {
			t.Errorf("%v: planWiring sets the level: %v", tt.v, w.settings)
		}
	}
}

func TestSplitMaps(t *testing.T) {
	for in, want := range map[string][]string{
		"":                                       nil,
		"hash:/a, texthash:/b":                   {"hash:/a", "texthash:/b"},
		"hash:/a,texthash:/b\n  tcp:127.0.0.1:1": {"hash:/a", "texthash:/b", "tcp:127.0.0.1:1"},
		"inline:{ a.example=encrypt, b.example=may }, hash:/c": {"inline:{ a.example=encrypt, b.example=may }", "hash:/c"},
	} {
		if got := splitMaps(in); !slices.Equal(got, want) {
			t.Errorf("splitMaps(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSetConfigValue: default = notfound replaces the setting, keeps every
// other line, is idempotent, and creates a missing file.
func TestSetConfigValue(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "mailtls.conf")
	orig := "# mailtls\ndb = /var/lib/mailtls/mailtls.db\n#default = encrypt\ndefault = may\nlog-level = info\ndefault=\"may\"\nkeep = 400d"
	if err := os.WriteFile(p, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	want := "# mailtls\ndb = /var/lib/mailtls/mailtls.db\n#default = encrypt\ndefault = notfound\nlog-level = info\nkeep = 400d\n"
	for i := 0; i < 2; i++ {
		if err := setConfigValue(p, "default", "notfound"); err != nil {
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
	if v, ok, err := configValue(p, "default"); err != nil || !ok || v != "notfound" {
		t.Errorf("configValue = %q %v %v", v, ok, err)
	}
	if vals, err := readConfig(p, map[string]bool{"db": true, "default": true, "log-level": true, "keep": true}); err != nil || vals["default"] != "notfound" || vals["keep"] != "400d" {
		t.Errorf("readConfig after set: %v %v", vals, err)
	}
	np := filepath.Join(dir, "sub", "new.conf")
	if err := setConfigValue(np, "default", "notfound"); err != nil {
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

func FuzzSplitMaps(f *testing.F) {
	for _, s := range []string{"", "hash:/a, texthash:/b", "a,,b", " , ", "inline:{ a=b, c=d }, x", "inline:{ {a} }", "}{,", "{", "{ ", "a\tb\nc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := splitMaps(s)
		total := 0
		for _, m := range got {
			if m == "" || strings.Trim(m, ", \t\r\n") != m && !strings.ContainsAny(m, "{}") {
				t.Fatalf("splitMaps(%q) has item %q", s, m)
			}
			if !strings.ContainsAny(m, "{}") && strings.ContainsAny(m, ", \t\r\n") {
				t.Fatalf("splitMaps(%q) has unsplit item %q", s, m)
			}
			total += len(m)
		}
		if total > len(s) {
			t.Fatalf("splitMaps(%q) = %q: longer than the input", s, got)
		}
		// Splitting the joined list again gives the same items.
		if again := splitMaps(strings.Join(got, ", ")); !slices.Equal(again, got) && !strings.ContainsAny(s, "{}") {
			t.Fatalf("splitMaps(join(%q)) = %q", got, again)
		}
	})
}

func FuzzSetConfigValue(f *testing.F) {
	for _, s := range []string{"", "default = may\n", "# default = x\ndb=/x", "default\n", "default = 'may'\nkeep 4d", "\x00", "default=a\ndefault=b\n"} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, s string) {
		p := filepath.Join(dir, "c.conf")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := setConfigValue(p, "default", "notfound"); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := configValue(p, "default"); err != nil || !ok || v != "notfound" {
			t.Fatalf("after set on %q: %q %v %v", s, v, ok, err)
		}
		b, _ := os.ReadFile(p)
		// Every line that does not set default is kept, in order.
		var kept []string
		for _, l := range strings.Split(string(b), "\n") {
			if n, _ := splitConfigLine(strings.TrimSpace(l)); n != "default" || strings.HasPrefix(strings.TrimSpace(l), "#") {
				kept = append(kept, strings.TrimRight(l, "\r"))
			}
		}
		var want []string
		for _, l := range strings.Split(s, "\n") {
			if n, _ := splitConfigLine(strings.TrimSpace(l)); n != "default" || strings.HasPrefix(strings.TrimSpace(l), "#") {
				want = append(want, strings.TrimRight(l, "\r"))
			}
		}
		if strings.TrimSuffix(strings.Join(kept, "\n"), "\n") != strings.TrimSuffix(strings.Join(want, "\n"), "\n") {
			t.Fatalf("set on %q gave %q", s, b)
		}
	})
}
