package delivery

import "testing"

func TestParseStatus(t *testing.T) {
	for _, s := range Statuses {
		if got, ok := ParseStatus(string(s)); !ok || got != s {
			t.Errorf("ParseStatus(%q) = %q, %v", s, got, ok)
		}
		if got, ok := ParseStatus([]byte(s)); !ok || got != s {
			t.Errorf("ParseStatus([]byte(%q)) = %q, %v", s, got, ok)
		}
	}
	// Address verification probes log other statuses; case matters, as
	// Postfix writes them lowercase.
	for _, s := range []string{"", "deliverable", "undeliverable", "Sent", "sent ", "bounce"} {
		if got, ok := ParseStatus(s); ok {
			t.Errorf("ParseStatus(%q) = %q, want not a status", s, got)
		}
	}
}

func TestOutcome(t *testing.T) {
	yes, no := true, false
	for _, c := range []struct {
		tls  *bool
		want Outcome
		name string
	}{{nil, Unknown, "unknown"}, {&yes, Encrypted, "encrypted"}, {&no, Plaintext, "plaintext"}} {
		d := Delivery{TLS: c.tls}
		if got := d.Outcome(); got != c.want || got.String() != c.name {
			t.Errorf("TLS %v: Outcome() = %v (%d), want %s", c.tls, got, got, c.name)
		}
	}
	seen := map[string]bool{}
	for _, o := range Outcomes {
		if seen[o.String()] {
			t.Errorf("two outcomes spell %q", o)
		}
		seen[o.String()] = true
	}
}

func TestRelayHost(t *testing.T) {
	for in, want := range map[string]string{
		"MX.Example.COM[192.0.2.1]:25":  "mx.example.com",
		"mx.example.com.[192.0.2.1]:25": "mx.example.com",
		"[2001:db8::99]:2525":           "[2001:db8::99]:2525",
		"unknown[192.0.2.1]:25":         "unknown[192.0.2.1]:25",
		"none":                          "none",
	} {
		if got := RelayHost(in); got != want {
			t.Errorf("RelayHost(%q) = %q, want %q", in, got, want)
		}
	}
}
