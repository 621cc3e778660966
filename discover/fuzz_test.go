package discover

import (
	"strings"
	"testing"
)

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
