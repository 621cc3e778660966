package mtasts

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/policyd"
)

// FuzzParsePolicy checks that the policy parser never panics, and
// that what it accepts is consistent: a known mode, max_age in range, mx
// patterns that are valid host names with at most a leading "*.", and a
// Postfix match list with no white space or commas, an answer policyd
// accepts as it is, and a stored form that reads back the same.
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
		"version: STSv1\nmode: none\nmax_age: 0",
		"version: STSv1\nmode: testing\nmx: a.b\nmax_age: 31557600\nfoo: bar baz\n",
		"version: STSv1\n\nmode: enforce\n",
		"version: STSv1\rmode: enforce\r",
		"version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmx: a.*.b\nmx: *\nmax_age: 99999999999\n",
		"version: STSv1\nmode: enforce\nmx: bücher.example\nmax_age: -1\n",
		"version: STSv1\nx: a\x00b\nmode: enforce\nmx: a.b\nmax_age: 1\n",
		"mx: a.b,c.d\nmx: a b\n",
		"",
		":\n:",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy(s)
		if err != nil {
			return
		}
		if p.Version != "STSv1" || p.MaxAge < 0 || p.MaxAge > MaxPolicyAge {
			t.Fatalf("accepted %+v", p)
		}
		switch p.Mode {
		case ModeEnforce, ModeTesting:
			if len(p.MX) == 0 {
				t.Fatalf("mode %s without mx accepted", p.Mode)
			}
		case ModeNone:
		default:
			t.Fatalf("mode %q accepted", p.Mode)
		}
		for _, m := range p.MX {
			if checkHostname(strings.TrimPrefix(m, "*.")) != nil || m != strings.ToLower(m) {
				t.Fatalf("mx %q accepted", m)
			}
			if !p.MatchMX(strings.Replace(m, "*", "x", 1)) {
				t.Fatalf("pattern %q does not match its own instance", m)
			}
		}
		if pm := p.PostfixMatch(); strings.ContainsAny(pm, " \t\r\n,*") {
			t.Fatalf("Postfix match list %q", pm)
		}
		if ans := p.PostfixPolicy(); ans != "" {
			if pp, err := policyd.ParsePolicy(ans); err != nil || pp.String() != ans {
				t.Fatalf("answer %q: policyd says %q, %v", ans, pp.String(), err)
			}
		}
		if q, err := ParsePolicy(p.String()); err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("stored form %q reads back as %+v, %v", p.String(), q, err)
		}
	})
}

// FuzzParseRecord: the _mta-sts TXT parser never panics and accepts
// only records with the version first and a 1-32 character alphanumeric id.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"v=STSv1; id=20160831085700Z;",
		"v=STSv1;id=abc",
		"v=STSv1; id=1; ext=v",
		"v=STSv1; id=1; id=2",
		"v=STSv1;; id=1",
		"v=STSv1; id=" + strings.Repeat("a", 40),
		"v=STSv1; id=é",
		"v=STSv1; id=1; foo=a=b",
		"v=STSv1",
		"id=1; v=STSv1",
		";",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := ParseRecord(s)
		if err != nil {
			return
		}
		if !strings.HasPrefix(s, "v=STSv1") || rec.Version != "STSv1" {
			t.Fatalf("accepted %q", s)
		}
		if len(rec.ID) < 1 || len(rec.ID) > 32 || strings.Trim(rec.ID, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
			t.Fatalf("id %q accepted from %q", rec.ID, s)
		}
		for _, e := range rec.Extensions {
			if !validExtName(e.Key) || !validTXTExtValue(e.Value) {
				t.Fatalf("extension %+v accepted", e)
			}
		}
	})
}
