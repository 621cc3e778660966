package policyd

import (
	"strings"
	"sync"
	"testing"
)

// fakePublisher answers from a map and records what it was asked.
type fakePublisher struct {
	mu      sync.Mutex
	answers map[string][2]string // key -> value, source
	tlsrpt  map[string]string    // key -> TLSRPT attributes
	asked   []string
}

func (f *fakePublisher) Publish(key string) (Published, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, key)
	a, ok := f.answers[key]
	return Published{Value: a[0], Source: a[1], TLSRPT: f.tlsrpt[key]}, ok
}

// TestPublisherPrecedence: an override (exact or .parent) wins and the
// publisher is not asked; after a miss the publisher's answer comes
// before the default, over socketmap and tcp_table alike; without one,
// the default (or NOTFOUND) stands.
func TestPublisherPrecedence(t *testing.T) {
	for _, def := range []string{"may", ""} {
		srv := newTestServer(t, def)
		pub := &fakePublisher{answers: map[string][2]string{
			"example.com":      {"dane-only", "dane"}, // has an override: never asked
			"a.corp.example":   {"dane", "dane"},      // .corp.example wildcard wins
			"gmail.example":    {"secure match=.gmail.example servername=hostname", "mta-sts"},
			"danepart.example": {"dane", "dane"},
		}}
		srv.Table.SetPublisher(pub)
		_, sm := listen(t, srv, "tcp", protoSocketmap)
		_, tt := listen(t, srv, "tcp", protoTCPTable)
		c, tc := dial(t, "tcp", sm), dial(t, "tcp", tt)
		notFound := "NOTFOUND "
		tcpNotFound := "500 not-found"
		daneSM, daneTCP := notFound, tcpNotFound // NOTFOUND: main.cf may say encrypt, dane is weaker
		if def != "" {
			notFound, tcpNotFound = "OK "+def, "200 "+def
			daneSM, daneTCP = "OK dane", "200 dane"
		}
		for _, tc2 := range []struct{ key, sm, tcp string }{
			{"example.com", "OK encrypt protocols=>=TLSv1.2", "200 encrypt%20protocols=>=TLSv1.2"},
			{"A.Corp.Example", "OK verify match=hostname", "200 verify%20match=hostname"},
			{"Gmail.Example", "OK secure match=.gmail.example servername=hostname", "200 secure%20match=.gmail.example%20servername=hostname"},
			{"danepart.example", daneSM, daneTCP},
			{"nothing.example", notFound, tcpNotFound},
		} {
			if got := c.query("tlspolicy " + tc2.key); got != tc2.sm {
				t.Errorf("default %q: socketmap %s = %q, want %q", def, tc2.key, got, tc2.sm)
			}
			tc.send("get " + tc2.key + "\n")
			if got := tc.line(); got != tc2.tcp {
				t.Errorf("default %q: tcp_table %s = %q, want %q", def, tc2.key, got, tc2.tcp)
			}
		}
		for _, k := range []string{"[mx.example.org]:25", "relay.example:587"} {
			if got := c.query("tlspolicy " + k); got != notFound {
				t.Errorf("%s: %q", k, got)
			}
		}
		pub.mu.Lock()
		for _, k := range pub.asked {
			if k == "example.com" || k == "a.corp.example" || strings.ContainsAny(k, "[]:") {
				t.Errorf("publisher asked about %s, which has an override or is not a domain", k)
			}
		}
		pub.mu.Unlock()
		r := srv.Table.withPublished([]byte("gmail.example"), srv.Table.Load().lookupBytes([]byte("gmail.example"), 0))
		if r.Rule != RulePublished || r.Source != "mta-sts" || !r.Found {
			t.Errorf("Result = %+v", r)
		}
		srv.Table.SetPublisher(nil)
		if got := c.query("tlspolicy gmail.example"); got != notFound {
			t.Errorf("publisher removed: %q", got)
		}
	}
}

// TestPublishedNeverWeaker: a published answer replaces the default only
// where no delivery gets weaker TLS than under the default.
func TestPublishedNeverWeaker(t *testing.T) {
	const sec = "secure match=.example.net servername=hostname"
	tests := []struct {
		def, published string
		want           bool
	}{
		{"may", "dane", true}, {"may", "dane-only", true}, {"may", sec, true}, {"none", "dane", true},
		{"", "dane", false}, {"", "dane-only", true}, {"", sec, true},
		{"encrypt", "dane", false}, {"encrypt protocols=>=TLSv1.2", "dane-only", true}, {"encrypt", sec, true},
		{"dane", "dane-only", false}, {"verify", sec, false}, {"secure", "dane-only", false}, {"dane-only", sec, false},
	}
	for _, tc := range tests {
		def := Result{Value: tc.def, Found: tc.def != "", Rule: RuleDefault}
		if !def.Found {
			def.Rule = RuleNotFound
		}
		tab := NewTable(tc.def)
		tab.SetPublisher(&fakePublisher{answers: map[string][2]string{"x.example": {tc.published, "test"}}})
		got := tab.withPublished([]byte("x.example"), def)
		if (got.Rule == RulePublished) != tc.want {
			t.Errorf("default %q, published %q: got %+v, want published %v", tc.def, tc.published, got, tc.want)
		}
	}
}
