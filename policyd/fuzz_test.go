package policyd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func FuzzNetstring(f *testing.F) {
	for _, seed := range []string{
		"5:hello,", "0:,", "14:tlspolicy a.b,3:x", "10000:", "10001:", "99999999999999999999:",
		"abc:", "-1:", "05:hello,", ":x,", "5:hello!", "5:hel", "5", "", "\x00\xff", "3:abc,3:def,",
		"1:\x00,", strings.Repeat("9", 100),
	} {
		f.Add([]byte(seed), uint16(16))
	}
	f.Fuzz(func(t *testing.T, in []byte, size uint16) {
		// Small buffers exercise the scratch path.
		br := bufio.NewReaderSize(bytes.NewReader(in), 16+int(size%5000))
		var scratch []byte
		consumed := 0
		for {
			p, err := ReadNetstring(br, MaxQuery, &scratch)
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, errNetstring) {
					t.Fatalf("unexpected error type %v", err)
				}
				if err == io.EOF && consumed != len(in) {
					t.Fatalf("clean EOF after %d of %d bytes", consumed, len(in))
				}
				return
			}
			if len(p) > MaxQuery {
				t.Fatalf("payload of %d bytes", len(p))
			}
			// What was accepted is exactly a canonical netstring.
			enc := fmt.Sprintf("%d:%s,", len(p), p)
			if !bytes.HasPrefix(in[consumed:], []byte(enc)) {
				t.Fatalf("accepted %q but input continues %q", enc, in[consumed:])
			}
			consumed += len(enc)
		}
	})
}

func FuzzTCPTableDecode(f *testing.F) {
	for _, seed := range []string{
		"get example.com", "get example%2Ecom", "get %", "get %4", "get %zz", "get a b", "get \x00",
		"get b%C3%BCcher.example", "put a b", "", "get ", "get %%41", "get \xff", "get a\r",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		key, err := parseTCPRequest(in)
		if err != nil {
			if !errors.Is(err, errTCPTable) {
				t.Fatalf("error %v does not wrap errTCPTable", err)
			}
			return
		}
		// Encoding the decoded key gives a wire form that decodes back to
		// it and contains only bytes that need no encoding.
		enc := AppendTCPEncoded(nil, string(key))
		for _, c := range enc {
			if c != '%' && tcpNeedsEncoding(c) {
				t.Fatalf("encoded %q contains raw %q", enc, c)
			}
		}
		dec, err := decodeTCP(bytes.Clone(enc))
		if err != nil || !bytes.Equal(dec, key) {
			t.Fatalf("decode(encode(%q)) = %q, %v (input %q)", key, dec, err, orig)
		}
		if len(key) > len(orig) {
			t.Fatalf("decoded key longer than the request")
		}
	})
}

func FuzzParsePolicy(f *testing.F) {
	for _, seed := range []string{
		"may", "encrypt protocols=>=TLSv1.2 ciphers=high", "verify match=hostname:nexthop:dot-nexthop",
		"secure match=.example.com:example.com tafile=/etc/ta.pem",
		"fingerprint match=3D:95:34:51:24:66:33:B9:D2:40:99:C0:C1:17:0B:D1|ec3c2e8a4ada9e8b48037fd7224892ba",
		"encrypt exclude=3DES:aNULL servername=hostname connection_reuse=yes enable_rpk=no",
		"encrpyt", "", "none protocols=TLSv1", "encrypt,protocols=TLSv1", "encrypt { protocols = TLSv1 }",
		"encrypt protocols=TLSv1.2\nciphers=null", "encrypt\x00", "encrypt protocols=", "encrypt foo=bar",
		"encrypt protocols=TLSv1 protocols=TLSv1", "encrypt match=hostname", "verify tafile=relative",
		"may servername=bücher.example", "encrypt protocols=>=TLSv1.3:<=TLSv1.2", "  may  \t ",
		"encrypt exclude=!aNULL", "encrypt exclude=aNULL:+RC4", "may exclude=@STRENGTH", "may ciphers=null",
		"encrypt protocols=!SSLv2:!SSLv3:!TLSv1:!TLSv1.1:!TLSv1.2:!TLSv1.3", "may protocols=SSLv3", "fingerprint",
		"may exclude=ALL", "encrypt exclude=aRSA:aECDSA:aDSS", "encrypt exclude=kRSA+AES:ECDHE+SHA1",
		"may protocols=TLSv1:!TLSv1:>=TLSv1.2", "encrypt exclude=CHACHA20:AES:CAMELLIA:ARIA",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := ParsePolicy(in)
		if err != nil {
			if !errors.Is(err, ErrBadPolicy) {
				t.Fatalf("error %v does not wrap ErrBadPolicy", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		s := p.String()
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c < 0x20 || c >= 0x7f || c == ',' || c == '{' || c == '}' {
				t.Fatalf("normal form %q contains %q", s, c)
			}
		}
		if strings.Contains(s, "  ") || strings.HasPrefix(s, " ") || strings.HasSuffix(s, " ") {
			t.Fatalf("normal form %q has stray spaces", s)
		}
		// Postfix's tokenisation of the normal form yields exactly our tokens.
		toks := strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(" \t\r\n,", r) })
		if len(toks) != 1+len(p.Attrs) {
			t.Fatalf("normal form %q splits into %d tokens, want %d", s, len(toks), 1+len(p.Attrs))
		}
		p2, err := ParsePolicy(s)
		if err != nil {
			t.Fatalf("normal form %q does not re-parse: %v", s, err)
		}
		if p2.String() != s || p2.Level != p.Level || len(p2.Attrs) != len(p.Attrs) {
			t.Fatalf("re-parse of %q gives %q", s, p2.String())
		}
		for i := range p.Attrs {
			if p.Attrs[i] != p2.Attrs[i] {
				t.Fatalf("re-parse of %q changes attribute %d: %v vs %v", s, i, p.Attrs[i], p2.Attrs[i])
			}
		}
	})
}

func FuzzNormalizeKey(f *testing.F) {
	for _, seed := range []string{
		"example.com", ".example.com", "[mx.example.com]:587", "[192.0.2.1]", "[ipv6:2001:db8::1]:25",
		"bücher.example", "example.com:smtp", "", " ", "a..b", "[", "[]:", "xn--zz", "192.0.2.1", "a,b",
		"bank.example.", "[bank.example.]:25", "[bank.example.]", "relay.example.:2525", ".corp.example.",
		"bücher.example.", "bücher.example。", "a..", ".", "[.]", "[.]:25", "\xff.example", "b\xfccher.example",
		"bank.example\xc3", "[ipv6:2001:db8::1.]:25",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		// The lookup path's dot trimming never grows a key nor panics.
		if tk := trimKeyDot([]byte(in)); len(tk) != len(in) && len(tk) != len(in)-1 {
			t.Fatalf("trimKeyDot(%q) = %q", in, tk)
		}
		k, err := NormalizeKey(in)
		if err != nil {
			if !errors.Is(err, ErrBadKey) || strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("bad error %q", err)
			}
			return
		}
		for i := 0; i < len(k); i++ {
			if c := k[i]; c <= ' ' || c >= 0x7f || c == ',' || c >= 'A' && c <= 'Z' {
				t.Fatalf("normal key %q contains %q", k, c)
			}
		}
		if k2, err := NormalizeKey(k); err != nil || k2 != k {
			t.Fatalf("NormalizeKey(%q) = %q, %v; want it unchanged", k, k2, err)
		}
		// One trailing dot on the host name changes nothing, when stored
		// or looked up.
		dotted := k + "."
		if i := strings.IndexByte(k, ']'); k[0] == '[' && i > 0 {
			dotted = k[:i] + "." + k[i:]
		} else if i := strings.IndexByte(k, ':'); i > 0 {
			dotted = k[:i] + "." + k[i:]
		}
		if inner := strings.TrimPrefix(k, "["); !strings.ContainsAny(inner[:1], "0123456789") && !strings.HasPrefix(inner, "ipv6:") && !strings.Contains(k, "::") {
			if k2, err := NormalizeKey(dotted); err != nil || k2 != k {
				t.Fatalf("NormalizeKey(%q) = %q, %v; want %q", dotted, k2, err, k)
			}
		}
		snap := NewSnapshot([]Override{{Key: k, Policy: "secure"}}, "may")
		if r := snap.Lookup(dotted, time.Time{}); r.Value != "secure" || r.Rule != RuleExact {
			t.Fatalf("Lookup(%q) with override %q = %+v", dotted, k, r)
		}
	})
}
