package policyd

import "testing"

func TestLevelVocabulary(t *testing.T) {
	for _, c := range []struct {
		policy, level  string
		requires, auth bool
	}{
		{"", "", false, false},
		{"none", "none", false, false},
		{"may", "may", false, false},
		{"dane", "dane", false, false},
		{"encrypt", "encrypt", true, false},
		{"ENCRYPT protocols=>=TLSv1.2", "encrypt", true, false},
		{"  encrypt\tprotocols=>=TLSv1.2", "encrypt", true, false},
		{"dane-only", "dane-only", true, true},
		{"fingerprint match=ab:cd", "fingerprint", true, true},
		{"verify", "verify", true, true},
		{"secure match=nexthop", "secure", true, true},
		{"sometimes", "sometimes", false, false},
	} {
		if got := LevelOf(c.policy); got != c.level {
			t.Errorf("LevelOf(%q) = %q, want %q", c.policy, got, c.level)
		}
		if got := RequiresTLS(c.policy); got != c.requires {
			t.Errorf("RequiresTLS(%q) = %v", c.policy, got)
		}
		if got := Authenticates(c.policy); got != c.auth {
			t.Errorf("Authenticates(%q) = %v", c.policy, got)
		}
	}
	for _, l := range Levels() {
		if !IsLevel(l) || Authenticates(l) && !RequiresTLS(l) {
			t.Errorf("level %q: IsLevel %v, authenticates without requiring TLS", l, IsLevel(l))
		}
	}
	if IsLevel("sometimes") || IsLevel("") {
		t.Error("IsLevel accepts a word that is no level")
	}
}

func TestParseKey(t *testing.T) {
	for in, want := range map[string]Key{
		"Example.COM.":            {Text: "example.com", Host: "example.com"},
		".example.com":            {Text: ".example.com", Parent: true, Host: "example.com"},
		"example.com:587":         {Text: "example.com:587", Host: "example.com", Port: "587"},
		"[MX.example.com]":        {Text: "[mx.example.com]", Bracketed: true, Host: "mx.example.com"},
		"[mx.example.com]:smtp":   {Text: "[mx.example.com]:smtp", Bracketed: true, Host: "mx.example.com", Port: "smtp"},
		"[192.0.2.1]:25":          {Text: "[192.0.2.1]:25", Bracketed: true, Host: "192.0.2.1", Port: "25"},
		"[ipv6:2001:db8::1]:2525": {Text: "[ipv6:2001:db8::1]:2525", Bracketed: true, Host: "ipv6:2001:db8::1", Port: "2525"},
	} {
		got, err := ParseKey(in)
		if err != nil || got != want {
			t.Errorf("ParseKey(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if n, _ := NormalizeKey(in); n != got.Text {
			t.Errorf("ParseKey(%q).Text = %q, NormalizeKey %q", in, got.Text, n)
		}
	}
	for _, bad := range []string{"", "exa mple.com", "[x", "*.example.com", "[h]:0"} {
		if _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

func TestParseDefault(t *testing.T) {
	for in, want := range map[string]string{"may": "may", " NotFound ": "", "ENCRYPT  protocols=>=TLSv1.2": "encrypt protocols=>=TLSv1.2"} {
		if got, err := ParseDefault(in); err != nil || got != want {
			t.Errorf("ParseDefault(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "sometimes", "not found"} {
		if _, err := ParseDefault(bad); err == nil {
			t.Errorf("ParseDefault(%q) accepted", bad)
		}
	}
}
