package window

import (
	"strings"
	"testing"
	"time"
)

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"24h":                       now.Add(-24 * time.Hour),
		"7d":                        now.Add(-7 * 24 * time.Hour),
		"2w":                        now.Add(-14 * 24 * time.Hour),
		"1d12h":                     now.Add(-36 * time.Hour),
		"2026-11-01T10:00:00Z":      time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC),
		"2026-11-01T10:00:00+02:00": time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC),
		"now":                       now,
	} {
		got, err := ParseWhen(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseWhen(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "7x", "-3d", "d", "2026-13-01", "1e9d"} {
		if _, err := ParseWhen(bad, now); err == nil {
			t.Errorf("ParseWhen(%q) accepted", bad)
		}
	}
}

func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{"24h", "7d", "1d12h", "2026-11-01", "2026-11-01T10:00:00Z", "99999999999d", "-1h", "d", "\x00"} {
		f.Add(s)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseWhen(s, now)
		if err == nil && got.IsZero() {
			t.Fatalf("ParseWhen(%q) accepted a zero time", s)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line error %q", err)
		}
	})
}

func TestParse(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	w, err := Parse("", "", "*.Example.COM", "7d", now, Query)
	if err != nil || !w.Since.Equal(now.Add(-7*24*time.Hour)) || !w.Until.Equal(now) || w.Domain != "*.example.com" {
		t.Fatalf("Parse defaults = %+v, %v", w, err)
	}
	w, err = Parse("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", "bücher.example", "7d", now, Query)
	if err != nil || w.Until.Sub(w.Since) != 24*time.Hour || w.Domain != "xn--bcher-kva.example" {
		t.Fatalf("Parse = %+v, %v", w, err)
	}
	for _, tc := range []struct {
		since, until, domain string
		name                 Name
		want                 string
	}{
		{"yesterday", "", "", Query, `since: invalid time "yesterday"`},
		{"", "soon", "", Query, `until: invalid time "soon"`},
		{"1h", "2h", "", Query, "since 2026-11-28T11:00:00Z is not before until 2026-11-28T10:00:00Z"},
		{"", "", "[mx.example]:25", Query, `invalid domain "[mx.example]:25"`},
		{"", "", ".example.com", Flag, `invalid --domain ".example.com"`},
		{"x", "", "", Flag, `--since: invalid time "x"`},
		{strings.Repeat("9", 500), "", "", Query, `since: invalid time "99999`},
		{"", "", "a\nb", Query, `invalid domain`},
	} {
		_, err := Parse(tc.since, tc.until, tc.domain, "7d", now, tc.name)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Parse(%q, %q, %q): %v, want an error starting %q", tc.since, tc.until, tc.domain, err, tc.want)
			continue
		}
		if strings.ContainsAny(err.Error(), "\n\r") || len(err.Error()) > 300 {
			t.Errorf("Parse(%q, %q, %q): error is not one short line: %q", tc.since, tc.until, tc.domain, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range [][3]string{{"24h", "", ""}, {"2026-11-01", "now", "example.com"}, {"", "", "*.example.com"},
		{"", "", "[x]:25"}, {"\x00", "\n", "\xff"}, {"-1h", "1h", ".a"}} {
		f.Add(s[0], s[1], s[2])
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, since, until, domain string) {
		w, err := Parse(since, until, domain, "7d", now, Query)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if !w.Since.Before(w.Until) {
			t.Fatalf("accepted an empty window %+v", w)
		}
	})
}
