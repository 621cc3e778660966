package logparse

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestInternalRelayBuiltIn(t *testing.T) {
	for _, tc := range []struct {
		relay string
		want  bool
	}{
		// content filters, as Postfix logs them
		{"127.0.0.1[127.0.0.1]:10024", true},
		{"[127.0.0.1]:10024", true},
		{"localhost[127.0.0.1]:10024", true},
		{"localhost[::1]:10025", true},
		{"[::1]:10025", true},
		{"localhost[::1]", true},
		{"::1[::1]:10025", true},
		{"localhost[IPv6:::1]:10025", true},
		{"localhost[::ffff:127.0.0.1]:10024", true},
		// LMTP over unix sockets
		{"mail.example.com[private/dovecot-lmtp]", true},
		{"mail.example.com[/var/run/dovecot/lmtp]", true},
		{"private/dovecot-lmtp", true},
		{"dovecot[/run/dovecot/lmtp]", true},
		// outbound
		{"mx.example.com[192.0.2.1]:25", false},
		{"mx.example.com[2001:db8::1]:25", false},
		{"lmtp.backend.example[10.0.0.5]:24", false},
		{"tls.test[127.0.0.2]:25", false}, // other loopback addresses: only when listed
		{"localhost", false},
		{"none", false},
		{"", false},
		{"evil[127.0.0.1", false},
		{"x[fe80::1%eth0]:25", false},
	} {
		var nilRelays *InternalRelays
		if got := nilRelays.Internal(tc.relay); got != tc.want {
			t.Errorf("Internal(%q) = %v, want %v", tc.relay, got, tc.want)
		}
	}
}

func TestInternalRelayConfigured(t *testing.T) {
	r, err := ParseInternalRelays([]string{"10.0.0.5:10024, filter.example.net", "[2001:db8::7]:10026 127.0.0.0/8", "scanner:10030"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		relay string
		want  bool
	}{
		{"filter[10.0.0.5]:10024", true},
		{"filter[10.0.0.5]:25", false},
		{"FILTER.example.net[192.0.2.9]:25", true},
		{"filter.example.net.[192.0.2.9]:25", true},
		{"x[2001:db8::7]:10026", true},
		{"x[2001:db8::7]:25", false},
		{"tls.test[127.0.0.2]:25", true},
		{"scanner[192.0.2.3]:10030", true},
		{"scanner[192.0.2.3]:25", false},
		{"mx.example.com[192.0.2.1]:25", false},
	} {
		if got := r.Internal(tc.relay); got != tc.want {
			t.Errorf("Internal(%q) = %v, want %v", tc.relay, got, tc.want)
		}
	}
}

func TestParseInternalRelaysBad(t *testing.T) {
	for _, s := range []string{"10.0.0.5:0", "10.0.0.5:70000", "[10.0.0.5", "[10.0.0.5]x", "10.0.0.0/33", "bad host!", "[]:25", "fe80::1%eth0", "a..b", ":25", "h:+25"} {
		_, err := ParseInternalRelays([]string{s})
		if !errors.Is(err, ErrBadInternalRelay) {
			t.Errorf("ParseInternalRelays(%q) = %v, want ErrBadInternalRelay", s, err)
			continue
		}
		if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "accepted") {
			t.Errorf("error for %q is not one line naming what is accepted: %v", s, err)
		}
	}
	if r, err := ParseInternalRelays(nil); err != nil || r.Internal("mx[192.0.2.1]:25") {
		t.Errorf("empty list: %v", err)
	}
}

func FuzzInternalRelays(f *testing.F) {
	for _, s := range []string{"10.0.0.5:10024", "[::1]:25", "127.0.0.0/8", "filter.example", "[x", "a:b:c", "", ",,", "[ipv6:::1]:1"} {
		f.Add(s, "mail[private/x]")
		f.Add(s, "h[10.0.0.5]:10024")
	}
	f.Fuzz(func(t *testing.T, list, relay string) {
		r, err := ParseInternalRelays([]string{list})
		if err != nil {
			if !errors.Is(err, ErrBadInternalRelay) || strings.ContainsAny(err.Error(), "\n") && !strings.ContainsAny(list, "\n") {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		got := r.Internal(relay)
		builtIn := (*InternalRelays)(nil).Internal(relay)
		if builtIn && !got {
			t.Fatalf("a list made %q less internal", relay)
		}
		if want := builtInReference(relay); builtIn != want {
			t.Fatalf("built-in rule: %q internal %v, want %v", relay, builtIn, want)
		}
	})
}

// builtInReference is the built-in rule spelt without Internal's short
// cuts: a socket path, or an address that parses as 127.0.0.1 or ::1.
func builtInReference(relay string) bool {
	if relay == "" || relay == "none" {
		return false
	}
	_, addr, _ := splitLoggedRelay(relay)
	if strings.Contains(addr, "/") {
		return true
	}
	a, err := netip.ParseAddr(strings.TrimPrefix(strings.ToLower(addr), "ipv6:"))
	if err != nil || a.Zone() != "" {
		return false
	}
	a = a.Unmap()
	return a == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || a == netip.IPv6Loopback()
}
