package postconf

import (
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
		st       State
		notfound bool
		maps     string // wanted smtp_tls_policy_maps setting; "" when unchanged
		level    string // wanted smtp_tls_security_level setting; "" when unchanged
	}{
		{"may alone", State{Level: "may", LogLevel: "1"}, false, testOurs, ""},
		{"already wired", State{Level: "may", LogLevel: "1", Maps: []string{testOurs}}, false, "", ""},
		{"none", State{Level: "none", LogLevel: "1"}, false, testOurs, ""},
		{"unset", State{LogLevel: "1"}, false, testOurs, "may"},
		{"encrypt", State{Level: "encrypt", LogLevel: "1"}, true, testOurs, ""},
		{"dane", State{Level: "dane", LogLevel: "1"}, true, testOurs, ""},
		{"dane-only", State{Level: "dane-only", LogLevel: "1"}, true, testOurs, ""},
		{"verify", State{Level: "verify", LogLevel: "1"}, true, testOurs, ""},
		{"secure", State{Level: "secure", LogLevel: "1"}, true, testOurs, ""},
		{"typo level", State{Level: "encrpyt", LogLevel: "1"}, true, testOurs, ""},
		{"may with table", State{Level: "may", LogLevel: "1", Maps: []string{"hash:/etc/postfix/tls_policy"}},
			true, testOurs + ", hash:/etc/postfix/tls_policy", ""},
		{"encrypt with tables", State{Level: "encrypt", LogLevel: "1", Maps: []string{"hash:/a", "texthash:/b"}},
			true, testOurs + ", hash:/a, texthash:/b", ""},
		{"old wiring, mailtls last", State{Level: "encrypt", LogLevel: "1", Maps: []string{"hash:/a", testOurs}},
			true, testOurs + ", hash:/a", ""},
		{"new Wiring again", State{Level: "encrypt", LogLevel: "1", Maps: []string{testOurs, "hash:/a"}}, true, "", ""},
		{"duplicate entries", State{Level: "may", LogLevel: "1", Maps: []string{testOurs, "hash:/a", testOurs, "hash:/a"}},
			true, testOurs + ", hash:/a", ""},
	}
	for _, tt := range tests {
		w := Plan(tt.st, testOurs)
		got := map[string]string{}
		for _, s := range w.Settings {
			got[s.Name] = s.Value
		}
		if w.NotFound != tt.notfound || got["smtp_tls_policy_maps"] != tt.maps || got["smtp_tls_security_level"] != tt.level {
			t.Errorf("%s: notfound %v, settings %v; want notfound %v, maps %q, level %q", tt.name, w.NotFound, w.Settings, tt.notfound, tt.maps, tt.level)
		}
		if len(w.Decisions) == 0 {
			t.Errorf("%s: no decision line", tt.name)
		}
		for _, d := range w.Decisions {
			if strings.Contains(d, "\n") {
				t.Errorf("%s: decision %q is not one line", tt.name, d)
			}
		}
		if tt.st.Level != "" && levelWritten(w) {
			t.Errorf("%s: smtp_tls_security_level rewritten: %v", tt.name, w.Settings)
		}
	}
}

func levelWritten(w Wiring) bool {
	for _, s := range w.Settings {
		if s.Name == "smtp_tls_security_level" {
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
		if got := EffectiveLevel(tt.v); got != tt.want {
			t.Errorf("EffectiveLevel(%v) = %q, want %q", tt.v, got, tt.want)
		}
		// Legacy enforcement never gets smtp_tls_security_level = may on top.
		if w := Plan(State{Level: EffectiveLevel(tt.v), LogLevel: "1"}, testOurs); tt.want != "" && levelWritten(w) {
			t.Errorf("%v: Plan sets the Level: %v", tt.v, w.Settings)
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
		if got := SplitMaps(in); !slices.Equal(got, want) {
			t.Errorf("SplitMaps(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzSplitMaps(f *testing.F) {
	for _, s := range []string{"", "hash:/a, texthash:/b", "a,,b", " , ", "inline:{ a=b, c=d }, x", "inline:{ {a} }", "}{,", "{", "{ ", "a\tb\nc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := SplitMaps(s)
		total := 0
		for _, m := range got {
			if m == "" || strings.Trim(m, ", \t\r\n") != m && !strings.ContainsAny(m, "{}") {
				t.Fatalf("SplitMaps(%q) has item %q", s, m)
			}
			if !strings.ContainsAny(m, "{}") && strings.ContainsAny(m, ", \t\r\n") {
				t.Fatalf("SplitMaps(%q) has unsplit item %q", s, m)
			}
			total += len(m)
		}
		if total > len(s) {
			t.Fatalf("SplitMaps(%q) = %q: longer than the input", s, got)
		}
		// Splitting the joined list again gives the same items.
		if again := SplitMaps(strings.Join(got, ", ")); !slices.Equal(again, got) && !strings.ContainsAny(s, "{}") {
			t.Fatalf("SplitMaps(join(%q)) = %q", got, again)
		}
	})
}

// TestPlanDefault: the config file gets default = notfound exactly when
// the plan needs NOTFOUND answers and the file does not say so already.
func TestPlanDefault(t *testing.T) {
	for _, tt := range []struct {
		notfound bool
		cur      string
		set      bool
		decision string // a substring of the one decision, or "" for none
	}{
		{true, "may", true, "default = notfound (was may)"},
		{true, " NotFound ", false, ""},
		{false, "notfound", false, "keeping default = notfound"},
		{false, "may", false, ""},
		{false, "encrypt", false, ""},
	} {
		w := Wiring{NotFound: tt.notfound}
		w.PlanDefault("/etc/mailtls/mailtls.conf", tt.cur)
		if w.SetDefault != tt.set {
			t.Errorf("notfound %v, default %q: SetDefault %v, want %v", tt.notfound, tt.cur, w.SetDefault, tt.set)
		}
		switch {
		case tt.decision == "" && len(w.Decisions) != 0:
			t.Errorf("notfound %v, default %q: decisions %q, want none", tt.notfound, tt.cur, w.Decisions)
		case tt.decision != "" && (len(w.Decisions) != 1 || !strings.Contains(w.Decisions[0], tt.decision)):
			t.Errorf("notfound %v, default %q: decisions %q, want one with %q", tt.notfound, tt.cur, w.Decisions, tt.decision)
		}
	}
}

// TestWeaker: a default of may under a stronger level, and any default
// in front of another table, are each reported once; the daemon's own
// maps are not other tables.
func TestWeaker(t *testing.T) {
	ours := DaemonMaps("127.0.0.1:8470", "127.0.0.1:8471", "", "", "tlspolicy")
	for _, tt := range []struct {
		def  string
		st   State
		want []string
	}{
		{"may", State{Level: "may", Maps: []string{testOurs}}, nil},
		{"may", State{Level: "encrypt", Maps: []string{testOurs}}, []string{"weaker than main.cf smtp_tls_security_level = encrypt"}},
		{"none", State{Level: "dane"}, []string{"default answer none is weaker"}},
		{"encrypt protocols=>=TLSv1.2", State{Level: "verify"}, nil},
		{"may", State{Level: "may", Maps: []string{"tcp:127.0.0.1:8471", "hash:/a"}}, []string{"also lists hash:/a: with default may"}},
		{"encrypt", State{Level: "secure", Maps: []string{"hash:/a", testOurs}}, []string{"also lists hash:/a: with default encrypt"}},
	} {
		got := Weaker(tt.def, tt.st, ours)
		if len(got) != len(tt.want) {
			t.Errorf("Weaker(%q, %+v) = %v, want %d warnings", tt.def, tt.st, got, len(tt.want))
			continue
		}
		for i, w := range got {
			if !strings.Contains(w.Msg, tt.want[i]) || len(w.Args) != 4 {
				t.Errorf("Weaker(%q, %+v)[%d] = %+v, want %q", tt.def, tt.st, i, w, tt.want[i])
			}
		}
	}
}

func TestMapNames(t *testing.T) {
	for got, want := range map[string]string{
		SocketmapMap("127.0.0.1:8470", "tlspolicy"):           testOurs,
		SocketmapMap("unix:/run/mailtls/p.sock", "tlspolicy"): "socketmap:unix:/run/mailtls/p.sock:tlspolicy",
		TCPMap("127.0.0.1:8471"):                              "tcp:127.0.0.1:8471",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}
