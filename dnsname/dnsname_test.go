package dnsname

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, tc := range []struct {
		name string
		want string // "" = accepted; else a part of the reason
	}{
		{"example.com", ""},
		{"mx-1.example.com", ""},
		{"_dmarc.example.com", ""}, // Postfix valid_hostname accepts "_"
		{"xn--bcher-kva.example", ""},
		{"localhost", ""},
		{"a1.123a", ""},
		{long + ".example", ""},
		{"", "empty domain name"},
		{".example.com", "empty label"},
		{"example.com.", "empty label"},
		{"a..b", "empty label"},
		{long + "a.example", "64 bytes long"},
		{strings.Repeat("a.", 127) + "aa", "256 bytes long"},
		{"-a.example", "hyphen"},
		{"a-.example", "hyphen"},
		{"192.0.2.1", "all digits"},
		{"example.123", "all digits"},
		{"Example.com", "character 'E'"},
		{"a b.example", "character ' '"},
		{"bücher.example", "A-label form"},
		{"xn--zz.example", "punycode"},
		{"*.example.com", "character '*'"},
	} {
		err := Check(tc.name)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Check(%q) = %v, want nil", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Check(%q) = %v, want an error with %q", tc.name, err, tc.want)
		}
		if Valid(tc.name) != (err == nil) {
			t.Errorf("Valid(%q) disagrees with Check", tc.name)
		}
	}
}

func TestToASCII(t *testing.T) {
	for in, want := range map[string]string{
		"Bücher.Example": "xn--bcher-kva.example",
		"EXAMPLE.COM":    "example.com",
		"example.com.":   "example.com.",
	} {
		got, err := ToASCII(in)
		if err != nil || got != want {
			t.Errorf("ToASCII(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ToASCII("a\u200db.example"); err == nil {
		t.Error("ToASCII accepted a ZERO WIDTH JOINER between Latin letters (CONTEXTJ)")
	}
}

func TestToUnicode(t *testing.T) {
	for in, want := range map[string]string{
		"xn--bcher-kva.example":    "bücher.example",
		"mx.xn--bcher-kva.example": "mx.bücher.example",
		"xn--r8jz45g.jp":           "例え.jp",
		"example.com":              "example.com",
	} {
		got, err := ToUnicode(in)
		if err != nil || got != want {
			t.Errorf("ToUnicode(%q) = %q, %v; want %q", in, got, err, want)
		}
		if back, err := ToASCII(got); err != nil || back != in {
			t.Errorf("ToASCII(ToUnicode(%q)) = %q, %v; want it back", in, back, err)
		}
	}
	if _, err := ToUnicode("xn--zz.example"); err == nil {
		t.Error("ToUnicode accepted invalid punycode")
	}
}

// FuzzCheck: Check never panics, and what it accepts is a lowercase
// A-label name of at most 253 bytes that ToASCII leaves as it is.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"example.com", "_a.b", "xn--bcher-kva.example", "1.2", "a..b", "bücher.example", "-", strings.Repeat("a.", 130)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if Check(s) != nil {
			return
		}
		if len(s) > MaxName || s != strings.ToLower(s) || strings.HasSuffix(s, ".") {
			t.Fatalf("Check accepted %q", s)
		}
		if a, err := ToASCII(s); err != nil || a != s {
			t.Fatalf("ToASCII(%q) = %q, %v for a name Check accepts", s, a, err)
		}
	})
}
