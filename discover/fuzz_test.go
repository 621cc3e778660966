package discover

import (
	"strings"
	"testing"
)

// FuzzParseMTASTSPolicy checks that the policy parser never panics, and
// that what it accepts is consistent: a known mode, max_age in range, mx
// patterns that are valid host names with at most a leading "*.", and a
// Postfix match list with no white space or commas.
func FuzzParseMTASTSPolicy(f *testing.F) {
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
	})
}

// FuzzParseSTSRecord: the _mta-sts TXT parser never panics and accepts
// only records with the version first and a 1-32 character alphanumeric id.
func FuzzParseSTSRecord(f *testing.F) {
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
		rec, err := ParseSTSRecord(s)
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

// FuzzParseTLSRPTRecord: the _smtp._tls TXT parser never panics and
// accepts only records with at least one mailto: or https: URI.
func FuzzParseTLSRPTRecord(f *testing.F) {
	for _, s := range []string{
		"v=TLSRPTv1; rua=mailto:reports@example.com",
		"v=TLSRPTv1;rua=https://r.example.net/v1,mailto:a@b;",
		"v=TLSRPTv1; rua=mailto:a%2Cb@example.com; ext=1",
		"v=TLSRPTv1; rua=http://x/",
		"v=TLSRPTv1; rua=mailto:a@b; rua=mailto:c@d",
		"v=TLSRPTv1; rua=mailto:a!b@c",
		"v=TLSRPTv1; rua=",
		"v=TLSRPTv1",
		"v=TLSRPTv1; rua=https:///x",
		";;",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := ParseTLSRPTRecord(s)
		if err != nil {
			return
		}
		if !strings.HasPrefix(s, "v=TLSRPTv1") || len(rec.RUA) == 0 {
			t.Fatalf("accepted %q as %+v", s, rec)
		}
		for _, u := range rec.RUA {
			l := strings.ToLower(u)
			if !strings.HasPrefix(l, "mailto:") && !strings.HasPrefix(l, "https:") || strings.ContainsAny(u, " \t,;!") {
				t.Fatalf("rua %q accepted from %q", u, s)
			}
		}
	})
}
