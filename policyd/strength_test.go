package policyd

import "testing"

func TestLowers(t *testing.T) {
	tests := []struct {
		from, to string
		lowers   bool
	}{
		// The case of issue #14: a probe that saw a bad certificate must not
		// replace a pinned MTA-STS policy.
		{"secure match=.example.com", "encrypt", true},
		{"secure match=.example.com", "may", true},
		{"verify", "encrypt", true},
		{"dane-only", "dane", true},
		{"dane-only", "verify", true},
		{"encrypt", "may", true},
		{"may", "none", true},
		// Across the authenticated levels: different trust, not stronger.
		{"verify", "secure match=.example.com", true},
		{"secure", "verify", true},
		{"verify", "dane-only", true},
		{"dane-only", "secure match=.example.com", true},
		{"fingerprint match=3D:95:34:51:24:66:33:B9:D2:40:99:C0:C1:17:0B:D1", "verify", true},
		// dane falls back to may without TLSA records: not above encrypt.
		{"encrypt", "dane", true},
		{"dane", "encrypt", true},
		// Same level, other attributes: a match list or cipher grade may
		// accept more.
		{"secure match=a.example", "secure match=b.example", true},
		{"secure match=a.example", "secure", true},
		{"secure", "secure match=a.example", true},
		{"encrypt protocols=>=TLSv1.2", "encrypt", true},
		{"encrypt", "encrypt ciphers=low", true},
		// Stronger level, but a constraint of the old policy dropped.
		{"encrypt protocols=>=TLSv1.3", "verify", true},
		{"encrypt ciphers=high", "dane-only ciphers=medium", true},
		// Raising.
		{"none", "may", false},
		{"may", "encrypt", false},
		{"may", "dane", false},
		{"dane", "dane-only", false},
		{"encrypt", "verify", false},
		{"encrypt", "secure match=.example.com:mx.other.example", false},
		{"encrypt", "dane-only", false},
		{"may", "secure match=.example.com", false},
		{"encrypt protocols=>=TLSv1.2", "verify protocols=>=TLSv1.2 match=mx.example.com", false},
		// No change.
		{"secure match=.example.com", "secure match=.example.com", false},
		{"encrypt", "encrypt", false},
	}
	for _, tt := range tests {
		from, err := ParsePolicy(tt.from)
		if err != nil {
			t.Fatal(err)
		}
		to, err := ParsePolicy(tt.to)
		if err != nil {
			t.Fatal(err)
		}
		if got := Lowers(from, to); got != tt.lowers {
			t.Errorf("Lowers(%q, %q) = %v, want %v", tt.from, tt.to, got, tt.lowers)
		}
	}
}

// The order is defined for every level, is strict and transitive.
func TestLevelAbove(t *testing.T) {
	if len(strongerThan) != len(levels) {
		t.Fatalf("strongerThan has %d levels, the grammar %d", len(strongerThan), len(levels))
	}
	for _, a := range levels {
		if _, ok := strongerThan[a]; !ok {
			t.Errorf("level %s has no place in the order", a)
		}
		if LevelAbove(a, a) {
			t.Errorf("%s above itself", a)
		}
		for _, b := range levels {
			if LevelAbove(a, b) && LevelAbove(b, a) {
				t.Errorf("%s and %s above each other", a, b)
			}
			for _, c := range levels {
				if LevelAbove(a, b) && LevelAbove(b, c) && !LevelAbove(a, c) {
					t.Errorf("%s > %s > %s but not %s > %s", a, b, c, a, c)
				}
			}
		}
		if a != "none" && !LevelAbove(a, "none") {
			t.Errorf("%s not above none", a)
		}
	}
	if LevelAbove("bogus", "none") || LevelAbove("may", "bogus") {
		t.Error("unknown level placed in the order")
	}
}

// FuzzLowers checks the order on any two valid policies: no policy lowers
// itself, and two different policies never both fail to lower each other
// (at most one direction is a raise).
func FuzzLowers(f *testing.F) {
	for _, s := range [][2]string{
		{"secure match=.example.com", "encrypt"},
		{"encrypt", "verify"},
		{"dane", "encrypt"},
		{"encrypt protocols=>=TLSv1.2", "verify protocols=>=TLSv1.2"},
		{"may", "may ciphers=high"},
		{"none", "dane-only"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		pa, err := ParsePolicy(a)
		if err != nil {
			return
		}
		pb, err := ParsePolicy(b)
		if err != nil {
			return
		}
		if Lowers(pa, pa) {
			t.Errorf("%q lowers itself", pa)
		}
		if pa.String() != pb.String() && !Lowers(pa, pb) && !Lowers(pb, pa) {
			t.Errorf("%q and %q each raise the other", pa, pb)
		}
	})
}
