package logparse

import (
	"slices"
	"testing"
)

// FuzzTLSFeatureLevel: any tls= value gives a level Postfix knows, or "".
func FuzzTLSFeatureLevel(f *testing.F) {
	for _, s := range []string{"dane", "dane:may", "!verify", "encrypt?", "secure/requiretls", "(disabled:may)", "may:none!", "", "/", "bogus:dane"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if l := TLSFeatureLevel(v); l != "" && !slices.Contains(tlsLevels[:], l) {
			t.Fatalf("TLSFeatureLevel(%q) = %q", v, l)
		}
	})
}

func TestTLSFeatureLevel(t *testing.T) {
	for v, want := range map[string]string{"dane": "dane", "dane:may": "dane", "!verify": "verify", "encrypt?": "encrypt",
		"secure/requiretls": "secure", "may": "may", "requiretls": "", "": ""} {
		if got := TLSFeatureLevel(v); got != want {
			t.Errorf("TLSFeatureLevel(%q) = %q, want %q", v, got, want)
		}
	}
}
