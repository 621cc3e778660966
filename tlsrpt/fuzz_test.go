package tlsrpt

import (
	"strings"
	"testing"
)

// FuzzMailtoAddress: a rua's address goes into a header and onto
// sendmail's command line: whatever is accepted has no line break, space
// or control character and cannot be taken for an option.
func FuzzMailtoAddress(f *testing.F) {
	for _, s := range []string{"mailto:r@dest.example", "mailto:r@dest.example?subject=x", "mailto:a%2Cb@x", "mailto:-oQ/tmp@x",
		"mailto:a@b%0ABcc:c@d", "mailto:\"a b\"@x", "mailto:<a@b>", "https://x/", "mailto:", "mailto:@", "MAILTO:A@B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rua string) {
		a, err := MailtoAddress(rua)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if a == "" || strings.HasPrefix(a, "-") || strings.ContainsAny(a, "\r\n\t <>") || !strings.Contains(a, "@") {
			t.Fatalf("MailtoAddress(%q) = %q", rua, a)
		}
		for _, c := range a {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("MailtoAddress(%q) = %q: control character", rua, a)
			}
		}
	})
}
