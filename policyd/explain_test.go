package policyd

import (
	"strings"
	"testing"
	"time"
)

func TestExplain(t *testing.T) {
	now := time.Now()
	s := NewSnapshot([]Override{
		{Key: "exact.example", Policy: "encrypt"},
		{Key: ".corp.example", Policy: "verify"},
		{Key: "old.example", Policy: "secure", Expires: now.Add(-time.Hour)},
	}, "may")
	for _, tt := range []struct {
		key, rule, source, why string
	}{
		{"exact.example", RuleExact, SourceOverride, "exact override exact.example"},
		{"a.corp.example", RuleWildcard, SourceOverride, "wildcard override .corp.example"},
		{"other.example", RuleDefault, SourceDefault, "default: no override matches"},
		{"old.example", "expired", SourceDefault, "default: no override matches; expired override ignored: old.example"},
	} {
		rule, source, why := s.Lookup(tt.key, now).Explain()
		if rule != tt.rule || source != tt.source || why != tt.why {
			t.Errorf("%s: Explain = %q, %q, %q; want %q, %q, %q", tt.key, rule, source, why, tt.rule, tt.source, tt.why)
		}
	}
	pub := WithPublished("other.example", s.Lookup("other.example", now), Published{Value: "dane-only", Source: "dane"})
	if rule, source, why := pub.Explain(); rule != RulePublished || source != "dane" || !strings.HasPrefix(why, "dane: published by the destination") {
		t.Errorf("published: Explain = %q, %q, %q", rule, source, why)
	}
	if _, source, _ := (Result{Rule: RuleUnavailable}).Explain(); source != "" {
		t.Errorf("unavailable: source %q, want none", source)
	}
}

// TestWithPublished: the published answer replaces only a default it
// does not weaken, and never for an override or a next-hop that is no
// recipient domain.
func TestWithPublished(t *testing.T) {
	now := time.Now()
	dane := Published{Value: "dane", Source: "dane"}
	only := Published{Value: "dane-only", Source: "dane"}
	for _, tt := range []struct {
		def, key string
		p        Published
		want     string // the rule of the answer
	}{
		{"may", "example.com", dane, RulePublished},
		{"encrypt", "example.com", dane, RuleDefault},
		{"encrypt", "example.com", only, RulePublished},
		{"", "example.com", dane, RuleNotFound},
		{"", "example.com", only, RulePublished},
		{"dane-only", "example.com", only, RuleDefault},
		{"may", "[mx.example.com]:25", only, RuleDefault},
		{"may", "pinned.example", only, RuleExact},
		{"dane-only", "example.com", Published{Unavailable: true}, RuleDefault},
		{"may", "example.com", Published{Unavailable: true}, RuleUnavailable},
	} {
		s := NewSnapshot([]Override{{Key: "pinned.example", Policy: "encrypt"}}, tt.def)
		if got := WithPublished(tt.key, s.Lookup(tt.key, now), tt.p); got.Rule != tt.want {
			t.Errorf("default %q, %s, published %+v: rule %q, want %q", tt.def, tt.key, tt.p, got.Rule, tt.want)
		}
	}
}

func TestParseOverride(t *testing.T) {
	for _, tt := range []struct {
		args          []string
		key, policy   string
		wantErrSubstr string
	}{
		{[]string{"Example.COM", "encrypt"}, "example.com", "encrypt", ""},
		{[]string{".corp.example", "verify match=hostname:nexthop"}, ".corp.example", "verify match=hostname:nexthop", ""},
		{[]string{"[MX.example.net]:587", "encrypt", "protocols=>=TLSv1.2"}, "[mx.example.net]:587", "encrypt protocols=>=TLSv1.2", ""},
		{[]string{"example.com", "encrypt\nprotocols=TLSv1"}, "", "", "line break"},
		{[]string{"example.com", "encrypt", "match=x"}, "", "", "match"},
		{[]string{"exa mple.com", "encrypt"}, "", "", ""},
		{[]string{"example.com"}, "", "", "KEY and LEVEL"},
	} {
		key, p, err := ParseOverride(tt.args)
		if tt.key == "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErrSubstr) {
				t.Errorf("ParseOverride(%q) = %q, %q, %v; want an error with %q", tt.args, key, p, err, tt.wantErrSubstr)
			}
			continue
		}
		if err != nil || key != tt.key || p.String() != tt.policy {
			t.Errorf("ParseOverride(%q) = %q, %q, %v; want %q, %q", tt.args, key, p, err, tt.key, tt.policy)
		}
	}
}
