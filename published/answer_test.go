package published

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policyd"
)

func TestAnswer(t *testing.T) {
	now := time.Now()
	snap := policyd.NewSnapshot([]policyd.Override{{Key: "pinned.example", Policy: "encrypt"}}, "may")
	pub := &Result{Source: SourceDANE, Policy: "dane-only", CacheAge: 5 * time.Second}
	applied := policyd.WithPublished("dane.example", snap.Lookup("dane.example", now), policyd.Published{Value: pub.Policy, Source: string(pub.Source)})
	for _, tt := range []struct {
		name  string
		a     Answer
		lines []string
		json  map[string]any
	}{
		{"override", Answer{Key: "pinned.example", Result: snap.Lookup("pinned.example", now), Consulted: true},
			[]string{"pinned.example  encrypt  (exact override pinned.example)"},
			map[string]any{"answer": "OK encrypt", "rule": policyd.RuleExact, "source": policyd.SourceOverride}},
		{"published", Answer{Key: "dane.example", Result: applied, Published: pub, Consulted: true},
			[]string{"dane.example  dane-only  (dane: published by the destination; no override matches)", `published: dane answers "dane-only" (resolved 5s ago)`},
			map[string]any{"answer": "OK dane-only", "rule": policyd.RulePublished, "source": "dane", "cache_age_seconds": int64(5)}},
		{"not cached", Answer{Key: "new.example", Result: snap.Lookup("new.example", now), Consulted: true},
			[]string{"new.example  may  (default: no override matches)", "published: not in the daemon's cache yet (it resolves a destination at its first lookup; --resolve looks it up now)"},
			map[string]any{"answer": "OK may", "rule": policyd.RuleDefault, "source": policyd.SourceDefault}},
		{"next-hop", Answer{Key: "[mx.example]:25", Result: snap.Lookup("[mx.example]:25", now), Consulted: true},
			[]string{"[mx.example]:25  may  (default: no override matches)"}, nil},
		{"not used", Answer{Key: "enc.example", Result: policyd.NewSnapshot(nil, "encrypt").Lookup("enc.example", now), Published: &Result{Source: SourceDANE, Policy: "dane"}, Consulted: true},
			[]string{"enc.example  encrypt  (default: no override matches)", `published: dane answers "dane" (resolved 0s ago)`, "  not used: the default is as strong or stronger"}, nil},
		{"notfound", Answer{Key: "x.example", Result: policyd.NewSnapshot(nil, "").Lookup("x.example", now)},
			[]string{"x.example  NOTFOUND (main.cf smtp_tls_security_level applies)  (default: no override matches)"},
			map[string]any{"answer": "NOTFOUND", "found": false}},
	} {
		got := tt.a.Lines()
		if len(got) != len(tt.lines) {
			t.Errorf("%s: Lines = %q, want %d lines", tt.name, got, len(tt.lines))
			continue
		}
		for i, want := range tt.lines {
			if !strings.HasPrefix(got[i], want) {
				t.Errorf("%s: line %d = %q, want %q", tt.name, i, got[i], want)
			}
		}
		j := tt.a.JSON()
		for k, want := range tt.json {
			if j[k] != want {
				t.Errorf("%s: JSON[%q] = %v, want %v", tt.name, k, j[k], want)
			}
		}
	}
}

func TestNewAnswer(t *testing.T) {
	now := time.Now()
	snap := policyd.NewSnapshot([]policyd.Override{{Key: "pinned.example", Policy: "encrypt"}}, "may")
	pub := &Result{Source: SourceDANE, Policy: "dane-only"}
	asked := 0
	get := func() (*Result, error) { asked++; return pub, nil }
	a, err := NewAnswer("dane.example", snap.Lookup("dane.example", now), true, get)
	want := policyd.WithPublished("dane.example", snap.Lookup("dane.example", now), policyd.Published{Value: "dane-only", Source: "dane"})
	if err != nil || asked != 1 || a.Published != pub || a.Result.Value != want.Value || a.Result.Rule != policyd.RulePublished || !a.Consulted {
		t.Errorf("after a miss: %+v, %v (asked %d)", a, err, asked)
	}
	if a, _ := NewAnswer("pinned.example", snap.Lookup("pinned.example", now), true, get); asked != 1 || a.Published != nil || a.Result.Value != "encrypt" {
		t.Errorf("an override hit consulted the published sources: %+v (asked %d)", a, asked)
	}
	if a, _ := NewAnswer("dane.example", snap.Lookup("dane.example", now), false, get); asked != 1 || a.Published != nil || a.Result.Value != "may" {
		t.Errorf("sources off, yet consulted: %+v (asked %d)", a, asked)
	}
	if _, err := NewAnswer("dane.example", snap.Lookup("dane.example", now), true, func() (*Result, error) { return nil, errors.New("boom") }); err == nil {
		t.Error("the published sources' error was dropped")
	}
}
