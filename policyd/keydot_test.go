package policyd

import (
	"bufio"
	"context"
	"net"
	"testing"
)

// TestLookupTrailingDot: one trailing dot is dropped from every lookup key,
// ASCII and IDN alike, also inside brackets and before a port, so that
// "bank.example." gets bank.example's override and not the default.
func TestLookupTrailingDot(t *testing.T) {
	snap := NewSnapshot([]Override{
		{Key: "bank.example", Policy: "secure"},
		{Key: ".corp.example", Policy: "verify"},
		{Key: "[bank.example]:25", Policy: "encrypt"},
		{Key: "[mx.bank.example]", Policy: "dane-only"},
		{Key: "relay.example:2525", Policy: "encrypt"},
		{Key: "bücher.example", Policy: "dane"},
	}, "may")
	tests := []struct{ key, want, rule string }{
		{"bank.example.", "secure", RuleExact},
		{"BANK.Example.", "secure", RuleExact},
		{"a.corp.example.", "verify", RuleWildcard},
		{".corp.example.", "verify", RuleExact},
		{"[bank.example.]:25", "encrypt", RuleExact},
		{"[BANK.example.]:25", "encrypt", RuleExact},
		{"[mx.bank.example.]", "dane-only", RuleExact},
		{"relay.example.:2525", "encrypt", RuleExact},
		{"bücher.example.", "dane", RuleExact},
		{"BÜCHER.example.", "dane", RuleExact},
		{"xn--bcher-kva.example.", "dane", RuleExact},
		// One dot only: two are not a name Postfix would send.
		{"bank.example..", "may", RuleDefault},
	}
	for _, tt := range tests {
		r := snap.Lookup(tt.key, t0)
		if !r.Found || r.Value != tt.want || r.Rule != tt.rule {
			t.Errorf("Lookup(%q) = %+v, want %q by rule %s", tt.key, r, tt.want, tt.rule)
		}
	}
}

// TestNormalizeKeyTrailingDot: stored keys lose one trailing dot the same way.
func TestNormalizeKeyTrailingDot(t *testing.T) {
	for in, want := range map[string]string{
		"bank.example.":       "bank.example",
		".corp.example.":      ".corp.example",
		"[bank.example.]:25":  "[bank.example]:25",
		"[bank.example.]":     "[bank.example]",
		"relay.example.:2525": "relay.example:2525",
		"bücher.example.":     "xn--bcher-kva.example",
		"bücher.example。":     "xn--bcher-kva.example", // ideographic full stop maps to "."
	} {
		got, err := NormalizeKey(in)
		if err != nil || got != want {
			t.Errorf("NormalizeKey(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestNonUTF8KeyNeverDefault: a key that is not UTF-8 is no destination
// Postfix can have; it gets PERM (socketmap) or 400 (tcp_table), never the
// default answer.
func TestNonUTF8KeyNeverDefault(t *testing.T) {
	srv := newTestServer(t, "may")
	for _, proto := range []protocol{protoSocketmap, protoTCPTable} {
		s, c := net.Pipe()
		done := make(chan struct{})
		go func() { srv.serveConn(context.Background(), s, proto); close(done) }()
		cl := &client{t: t, c: c, br: bufio.NewReader(c)}
		for _, key := range []string{"\xff.example", "b\xfccher.example", "a.\xc3\x28.example", "bank.example\xc3"} {
			if proto == protoSocketmap {
				want := "PERM invalid key: not UTF-8 (want a next-hop destination such as example.com or [192.0.2.1]:25)"
				if got := cl.query("tlspolicy " + key); got != want {
					t.Errorf("socketmap %q = %q, want %q", key, got, want)
				}
				continue
			}
			cl.send("get " + string(AppendTCPEncoded(nil, key)) + "\n")
			if got := cl.line(); got != "400 invalid-key" {
				t.Errorf("tcp_table %q = %q, want 400 invalid-key", key, got)
			}
		}
		// Valid UTF-8 still works on the same connection.
		if proto == protoSocketmap {
			if got := cl.query("tlspolicy bücher.example"); got != "OK dane" {
				t.Errorf("after bad keys: %q", got)
			}
		} else {
			cl.send("get b%C3%BCcher.example\n")
			if got := cl.line(); got != "200 dane" {
				t.Errorf("after bad keys: %q", got)
			}
		}
		c.Close()
		<-done
	}
}
