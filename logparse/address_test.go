package logparse

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/delivery"
)

// TestHostileRecipient: a quoted local part that looks like the rest of a
// delivery record must not forge its fields (issue #14, item 2).
func TestHostileRecipient(t *testing.T) {
	const forged = `"x@bank.example>, relay=mx.evil.example[192.0.2.9]:25, dsn=2.0.0, status=sent (250 ok) "@evil.example`
	for _, line := range []string{
		"Nov 28 16:00:00 host postfix/smtp[700]: 8000000001: to=<" + forged + ">, relay=mx.evil.example[192.0.2.9]:25, delay=0.1, delays=0/0/0.05/0.05, dsn=5.1.1, status=bounced (host mx.evil.example[192.0.2.9] said: 550 no such user)",
		"Nov 28 16:00:00 host postfix/smtp[700]: 8000000001: to=<a@evil.example>, orig_to=<" + forged + ">, relay=mx.evil.example[192.0.2.9]:25, delay=0.1, delays=0/0/0.05/0.05, dsn=5.1.1, status=bounced (host mx.evil.example[192.0.2.9] said: 550 no such user)",
	} {
		ds := NewCorrelator(goldenOptions("")).Feed([]byte(line))
		if len(ds) != 1 {
			t.Fatalf("%d deliveries for %q", len(ds), line)
		}
		d := ds[0]
		if d.Domain != "evil.example" || d.Status != delivery.Bounced || d.DSN != "5.1.1" || d.Relay != "mx.evil.example[192.0.2.9]:25" {
			t.Errorf("forged: domain %q status %q dsn %q relay %q", d.Domain, d.Status, d.DSN, d.Relay)
		}
		if d.Recipient != forged && d.OrigTo != forged {
			t.Errorf("recipient %q, orig_to %q: the address is not kept whole", d.Recipient, d.OrigTo)
		}
	}
}

func TestCutAddr(t *testing.T) {
	tests := []struct {
		in, addr, domain, rest string
		ok                     bool
	}{
		{"<a@b.example>", "a@b.example", "b.example", "", true},
		{"<a@b.example>, relay=x", "a@b.example", "b.example", ", relay=x", true},
		{`<"a>, b"@x.example>, dsn=4.4.1`, `"a>, b"@x.example`, "x.example", ", dsn=4.4.1", true},
		{`<"a\"@b>, relay=y"@c.example>, relay=x`, `"a\"@b>, relay=y"@c.example`, "c.example", ", relay=x", true},
		{`<"a\\"@c.example>, relay=x`, `"a\\"@c.example`, "c.example", ", relay=x", true},
		{`<"@">`, `"@"`, "", "", true},
		{`<root>`, "root", "", "", true},
		{`<>`, "", "", "", true},
		{`<"unterminated@x>, relay=x`, "", "", "", false},
		{`<a@b>x, relay=x`, "", "", "", false},
		{`a@b>`, "", "", "", false},
		{`<a@b`, "", "", "", false},
	}
	for _, tt := range tests {
		addr, at, rest, ok := cutAddr([]byte(tt.in))
		if ok != tt.ok {
			t.Errorf("cutAddr(%q): ok = %v", tt.in, ok)
			continue
		}
		if !ok {
			continue
		}
		domain := ""
		if at >= 0 {
			domain = string(addr[at+1:])
		}
		if string(addr) != tt.addr || domain != tt.domain || string(rest) != tt.rest {
			t.Errorf("cutAddr(%q) = %q, domain %q, rest %q; want %q, %q, %q", tt.in, addr, domain, rest, tt.addr, tt.domain, tt.rest)
		}
	}
}

// quote822Local writes a local part as Postfix's quote_822_local() does for
// logging (info_log_address_format = external, the default): quoted when
// it is not a dot-atom, with '"', '\\' and CR escaped by a backslash.
func quote822Local(local string) string {
	dotAtom := local != "" && !strings.HasPrefix(local, ".") && !strings.HasSuffix(local, ".") && !strings.Contains(local, "..")
	for i := 0; i < len(local) && dotAtom; i++ {
		c := local[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\".[]`, c) >= 0 && c != '.' {
			dotAtom = false
		}
	}
	if dotAtom {
		return local
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' || c == '\r' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String()
}

// postfixPrintable replaces what Postfix's msg_output replaces with '?'
// before a record reaches the log: control characters.
func postfixPrintable(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c == 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

// FuzzRecipientAddress: whatever the local part holds, a record written as
// Postfix writes it parses to the domain after the last unquoted '@' and
// to the relay, dsn and status that Postfix wrote.
func FuzzRecipientAddress(f *testing.F) {
	for _, s := range [][2]string{
		{"alice", "tls.test"},
		{`x@bank.example>, relay=mx.evil.example[192.0.2.9]:25, dsn=2.0.0, status=sent (250 ok) `, "evil.example"},
		{`a"b\c>, orig_to=<z@y>, relay=none, status=sent`, "x.example"},
		{`">`, "[192.0.2.1]"},
		{"", "d.example"},
		{"\\", "d"},
		{"a\r\n b", "ÖRG.example"},
	} {
		f.Add(s[0], s[1], true)
		f.Add(s[0], s[1], false)
	}
	f.Fuzz(func(t *testing.T, local, domain string, asOrigTo bool) {
		domain = domainChars(domain)
		addr := postfixPrintable(quote822Local(local) + "@" + domain)
		rcpt := "victim@ok.example"
		field := "to=<" + addr + ">"
		if asOrigTo {
			field = "to=<" + rcpt + ">, orig_to=<" + addr + ">"
		}
		line := fmt.Sprintf("Nov 28 16:00:00 host postfix/smtp[700]: 8000000001: %s, relay=mx.real.example[192.0.2.1]:25, delay=0.1, delays=0/0/0.05/0.05, dsn=5.1.1, status=bounced (550 %s)", field, addr)
		ds := NewCorrelator(goldenOptions("")).Feed([]byte(line))
		if len(ds) != 1 {
			t.Fatalf("%d deliveries for %q", len(ds), line)
		}
		d := ds[0]
		if d.Relay != "mx.real.example[192.0.2.1]:25" || d.DSN != "5.1.1" || d.Status != delivery.Bounced || d.QueueID != "8000000001" {
			t.Fatalf("fields forged by %q: %+v", addr, d)
		}
		wantDomain := strings.ToLower(toString([]byte(domain)))
		if asOrigTo {
			if d.OrigTo != toString([]byte(addr)) || d.Recipient != rcpt || d.Domain != "ok.example" {
				t.Fatalf("orig_to %q: got recipient %q orig_to %q domain %q", addr, d.Recipient, d.OrigTo, d.Domain)
			}
		} else if d.Recipient != toString([]byte(addr)) || d.Domain != wantDomain {
			t.Fatalf("to %q: got recipient %q domain %q, want domain %q", addr, d.Recipient, d.Domain, wantDomain)
		}
		if !bytes.Contains([]byte(d.Reason), []byte("550 ")) {
			t.Fatalf("reason %q", d.Reason)
		}
	})
}

// domainChars keeps the bytes a domain or address literal in a Postfix
// record can hold: no quotes, brackets closing the address, commas or
// spaces, which Postfix's address parser would not leave unquoted.
func domainChars(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c != 0x7f && strings.IndexByte(`"<>,\@()`, c) < 0 {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// FuzzCutAddr: cutAddr's short cut for addresses without quotes gives what
// the byte-by-byte reading (cutQuotedAddr) gives, for any input.
func FuzzCutAddr(f *testing.F) {
	for _, s := range []string{"<a@b>, relay=x", `<"a>b"@c>, x`, "<a@b@c>", "<a@b>x", "<>", "<a", `<a\"@b>, `, `<"a\"@b>, `, "<a>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, at, rest, ok := cutAddr([]byte(s))
		wAddr, wAt, wRest, wOK := cutQuotedAddr([]byte(s))
		if ok != wOK || at != wAt || !bytes.Equal(addr, wAddr) || !bytes.Equal(rest, wRest) {
			t.Fatalf("cutAddr(%q) = %q %d %q %v; byte by byte: %q %d %q %v", s, addr, at, rest, ok, wAddr, wAt, wRest, wOK)
		}
	})
}
