package policyd

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeKeyValid(t *testing.T) {
	tests := []struct{ in, want string }{
		{"example.com", "example.com"},
		{"  Example.COM  ", "example.com"},
		{"example.com.", "example.com"},
		{".example.com", ".example.com"},
		{".Corp.Example", ".corp.example"},
		{"localhost", "localhost"},
		{"mx_1.example.com", "mx_1.example.com"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"BÜCHER.example", "xn--bcher-kva.example"},
		{".bücher.example", ".xn--bcher-kva.example"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"例え.テスト", "xn--r8jz45g.xn--zckzah"},
		{"example.com:587", "example.com:587"},
		{"example.com:submission", "example.com:submission"},
		{"[mx.example.com]", "[mx.example.com]"},
		{"[MX.Example.com]:587", "[mx.example.com]:587"},
		{"[mx.example.com]:SMTP", "[mx.example.com]:smtp"},
		{"[bücher.example]:25", "[xn--bcher-kva.example]:25"},
		{"[192.0.2.1]", "[192.0.2.1]"},
		{"[192.0.2.1]:25", "[192.0.2.1]:25"},
		{"[ipv6:2001:db8::1]", "[ipv6:2001:db8::1]"},
		{"[IPv6:2001:DB8::1]:25", "[ipv6:2001:db8::1]:25"},
		{"[2001:db8::1]:25", "[2001:db8::1]:25"},
		{"[mx.example.com]:65535", "[mx.example.com]:65535"},
		{strings.Repeat("a", 63) + ".example", strings.Repeat("a", 63) + ".example"},
	}
	for _, tt := range tests {
		got, err := NormalizeKey(tt.in)
		if err != nil {
			t.Errorf("NormalizeKey(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("NormalizeKey(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if again, err := NormalizeKey(got); err != nil || again != got {
			t.Errorf("NormalizeKey(%q) = %q, %v; want it unchanged", got, again, err)
		}
	}
}

func TestNormalizeKeyInvalid(t *testing.T) {
	long := strings.Repeat("abcdefghi.", 26) + "example" // 267 bytes
	tests := []struct{ in, want string }{
		{"", "empty key"},
		{"   ", "empty key"},
		{"exa mple.com", "whitespace"},
		{"example.com\tfoo", "whitespace"},
		{"example.com\n", ""}, // trimmed: valid; see below
		{"exa\nmple.com", "control character"},
		{"exa\x00mple.com", "control character"},
		{"a.example,b.example", "comma"},
		{".", "empty domain"},
		{"..example.com", "empty label"},
		{"a..example.com", "empty label"},
		{"-a.example.com", "hyphen"},
		{"a-.example.com", "hyphen"},
		{"exa$mple.com", "character"},
		{strings.Repeat("a", 64) + ".example", "at most 63"},
		{long, "bytes long"},
		{"192.0.2.1", "is an address"},
		{"example.123", "all digits"},
		{"xn--zz.example", "punycode"},
		{"example.com:0", "bad port"},
		{"example.com:65536", "bad port"},
		{"example.com:025", "bad port"},
		{"example.com:", "empty port"},
		{"example.com:-smtp", "bad port"},
		{"example.com:smtp--x", "bad port"},
		{"2001:db8::1", "bracketed"},
		{"[mx.example.com", "no closing bracket"},
		{"[]", "nothing inside"},
		{"[mx.example.com]x", "after the closing bracket"},
		{"[mx.example.com]:", "empty port"},
		{"[mx.example.com]:99999", "bad port"},
		{"[.example.com]", "wildcard"},
		{"*.example.com", `subdomains of example.com are the key ".example.com"`},
		{"*.", "character"},
		{"[300.1.2.3]", "not an IPv4"},
		{"[1.2.3]", "not an IPv4"},
		{"[ipv6:1.2.3.4]", "not an IPv6"},
		{"[ipv6:fe80::1%eth0]", "not an IPv6"},
		{"[2001:db8::g]", "not an IPv6"},
		{"bü cher.example", "whitespace"},
		{"a\u200db.example", "internationalised"},
	}
	for _, tt := range tests {
		got, err := NormalizeKey(tt.in)
		if tt.want == "" {
			if err != nil {
				t.Errorf("NormalizeKey(%q): %v", tt.in, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("NormalizeKey(%q) = %q, want error containing %q", tt.in, got, tt.want)
			continue
		}
		if !errors.Is(err, ErrBadKey) {
			t.Errorf("NormalizeKey(%q) error %v does not wrap ErrBadKey", tt.in, err)
		}
		if msg := err.Error(); !strings.Contains(msg, tt.want) || strings.ContainsAny(msg, "\r\n") {
			t.Errorf("NormalizeKey(%q) error = %q, want one line containing %q", tt.in, msg, tt.want)
		}
	}
}
