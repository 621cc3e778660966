package policyd

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// mapSnapshot is the plain-map snapshot the compact one replaced, kept as
// the reference: the same rules (NormalizeKey, ParsePolicy, later wins,
// invalid values kept verbatim), a map of key -> entry, and Lookup's
// search order.
type mapSnapshot struct {
	m   map[string]mapEntry
	def string
}

type mapEntry struct {
	key, value string
	expires    int64
}

func newMapSnapshot(ovs []Override, def string) *mapSnapshot {
	s := &mapSnapshot{m: map[string]mapEntry{}}
	norm := func(v string) string {
		p, err := ParsePolicy(v)
		if err != nil {
			return v
		}
		return p.String()
	}
	if def != "" {
		s.def = norm(def)
	}
	for _, o := range ovs {
		k, err := NormalizeKey(o.Key)
		if err != nil {
			continue
		}
		var exp int64
		if !o.Expires.IsZero() {
			exp = o.Expires.UnixNano()
		}
		s.m[k] = mapEntry{k, norm(o.Policy), exp}
	}
	return s
}

func (s *mapSnapshot) lookup(key string, now time.Time) Result {
	// As Lookup: ASCII keys are only lowercased, others normalised.
	k := lowerASCII(key)
	if len(key) > maxFastKey || !isASCII(key) {
		var err error
		if k, err = NormalizeKey(key); err != nil {
			k = strings.ToLower(key)
		}
	}
	k = string(trimKeyDot([]byte(k)))
	var r Result
	t := now.UnixNano()
	if e, ok := s.m[k]; ok {
		if e.expires == 0 || e.expires > t {
			return Result{Value: e.value, Found: true, Rule: RuleExact, Key: e.key}
		}
		r.Expired = append(r.Expired, e.key)
	}
	if isDomainKey([]byte(k)) {
		for i := 1; i < len(k); i++ {
			if k[i] != '.' {
				continue
			}
			if e, ok := s.m[k[i:]]; ok {
				if e.expires == 0 || e.expires > t {
					return Result{Value: e.value, Found: true, Rule: RuleWildcard, Key: e.key, Expired: r.Expired}
				}
				r.Expired = append(r.Expired, e.key)
			}
		}
	}
	if s.def != "" {
		r.Value, r.Found, r.Rule = s.def, true, RuleDefault
		return r
	}
	r.Rule = RuleNotFound
	return r
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// The pieces random tables and keys are made of: few labels, so that
// keys collide, nest and repeat; values valid and not.
var (
	propLabels = []string{"a", "b", "mx", "example", "com", "Example", "xn--bcher-kva", "bücher", "net"}
	propValues = []string{"encrypt", "Encrypt", "may", "none", "dane", "verify match=hostname:nexthop",
		"secure match=.example.com", "encrypt protocols=>=TLSv1.2", "bogus", "secure  match=nexthop", ""}
)

func propKey(r *rand.Rand) string {
	var k string
	for i := range 1 + r.IntN(4) {
		if i > 0 {
			k += "."
		}
		k += propLabels[r.IntN(len(propLabels))]
	}
	switch r.IntN(8) {
	case 0:
		return "." + k
	case 1:
		return "[" + k + "]:25"
	case 2:
		return k + ":587"
	case 3:
		return k + "."
	case 4:
		return "[192.0.2." + fmt.Sprint(r.IntN(3)) + "]"
	}
	return k
}

// compareSnapshots checks that the compact snapshot answers every key
// exactly as the plain map does, at several times (expiry).
func compareSnapshots(t *testing.T, ovs []Override, def string, keys []string, times []time.Time) {
	t.Helper()
	got, want := NewSnapshot(ovs, def), newMapSnapshot(ovs, def)
	if got.Len() != len(want.m) {
		t.Fatalf("Len = %d, want %d (overrides %v)", got.Len(), len(want.m), ovs)
	}
	for _, now := range times {
		for _, k := range keys {
			g, w := got.Lookup(k, now), want.lookup(k, now)
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("Lookup(%q) at %v = %+v, want %+v\noverrides: %v", k, now.Unix(), g, w, ovs)
			}
		}
	}
}

func TestCompactSnapshotMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	base := time.Unix(1_800_000_000, 0)
	times := []time.Time{base.Add(-time.Hour), base, base.Add(time.Hour)}
	for round := range 300 {
		n := r.IntN(60)
		if round%50 == 0 {
			n = 3000 // several hash table doublings
		}
		ovs := make([]Override, n)
		for i := range ovs {
			ovs[i] = Override{Key: propKey(r), Policy: propValues[r.IntN(len(propValues))]}
			switch r.IntN(4) {
			case 0:
				ovs[i].Expires = base.Add(time.Duration(r.IntN(3)-1) * time.Hour)
			case 1:
				ovs[i].Expires = base
			}
		}
		keys := make([]string, 80)
		for i := range keys {
			keys[i] = propKey(r)
		}
		for _, o := range ovs[:min(len(ovs), 20)] {
			keys = append(keys, o.Key, "x."+o.Key)
		}
		def := []string{"", "may", "encrypt", "bogus"}[round%4]
		compareSnapshots(t, ovs, def, keys, times)
	}
}

// FuzzCompactSnapshot: overrides and keys from the fuzzer's bytes, one per
// line: "key value" (value optional) for the first half, keys after a
// blank line.
func FuzzCompactSnapshot(f *testing.F) {
	f.Add("example.com encrypt\n.example.com may\n[mx.example.com]:25 dane\n\nexample.com\na.b.example.com\n[mx.example.com]:25\nexample.com.\n")
	f.Add("EXAMPLE.com bogus\nexample.com secure\n\nexample.com\nExample.COM\n")
	f.Add(".com none\nbücher.example verify\n\nxn--bcher-kva.example\na.bücher.example\n")
	base := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, in string) {
		var ovs []Override
		var keys []string
		table := true
		for i, line := range splitLines(in) {
			if line == "" {
				table = false
				continue
			}
			if !table {
				keys = append(keys, line)
				continue
			}
			k, v, _ := cut(line, ' ')
			keys = append(keys, k)
			o := Override{Key: k, Policy: v}
			if i%3 == 1 {
				o.Expires = base
			}
			ovs = append(ovs, o)
		}
		compareSnapshots(t, ovs, "may", keys, []time.Time{base.Add(-time.Second), base})
	})
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 && len(out) < 200 {
		l, rest, _ := cut(s, '\n')
		out, s = append(out, l), rest
	}
	return out
}

func cut(s string, sep byte) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// A source may yield overrides in any order (the store scans its table in
// row order): when two keys normalise to the same one, the key that sorts
// last wins, as when the store read them in key order, whatever the order
// they arrive in.
func TestReloadCollisionsIndependentOfOrder(t *testing.T) {
	ovs := []Override{
		{Key: "example.com", Policy: "encrypt"}, // sorts after "Example.com" and "EXAMPLE.COM."
		{Key: "Example.com", Policy: "may"},
		{Key: "EXAMPLE.COM.", Policy: "dane"},
		{Key: ".Example.net", Policy: "none"},
		{Key: ".example.net", Policy: "verify"}, // sorts last
	}
	for _, order := range [][]int{{0, 1, 2, 3, 4}, {1, 2, 0, 4, 3}, {2, 1, 0, 3, 4}, {4, 3, 2, 1, 0}} {
		var in []Override
		for _, i := range order {
			in = append(in, ovs[i])
		}
		tb := NewTable("may")
		if _, err := tb.Reload(context.Background(), &fakeSource{ovs: in}); err != nil {
			t.Fatal(err)
		}
		s := tb.Load()
		if r := s.Lookup("example.com", time.Now()); r.Value != "encrypt" || r.Key != "example.com" {
			t.Errorf("order %v: example.com = %+v, want encrypt from example.com", order, r)
		}
		if r := s.Lookup("a.example.net", time.Now()); r.Value != "verify" {
			t.Errorf("order %v: a.example.net = %+v, want verify", order, r)
		}
		if s.Len() != 2 {
			t.Errorf("order %v: Len = %d, want 2", order, s.Len())
		}
	}
}
