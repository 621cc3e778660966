// Package window parses the report window that the command line
// (--since, --until, --domain) and the HTTP listener (?since=, &until=,
// &domain=) accept, so that both accept exactly the same values.
package window

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/store"
)

// Name spells a parameter in error messages: "--since" on the command
// line, "since" in a query string.
type Name func(param string) string

// Flag names parameters as command-line flags.
func Flag(p string) string { return "--" + p }

// Query names parameters as query-string parameters.
func Query(p string) string { return p }

// ParseDuration accepts Go durations ("36h", "90m") plus days and weeks
// ("7d", "2w", "1d12h").
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration (want e.g. 24h, 7d, 2w)")
	}
	var total time.Duration
	for _, unit := range []struct {
		suffix byte
		d      time.Duration
	}{{'w', 7 * 24 * time.Hour}, {'d', 24 * time.Hour}} {
		if i := strings.IndexByte(s, unit.suffix); i >= 0 {
			n, err := strconv.Atoi(s[:i])
			if err != nil || n < 0 || n > 100_000 {
				return 0, fmt.Errorf("invalid duration %q (want e.g. 24h, 7d, 2w)", orig)
			}
			total += time.Duration(n) * unit.d
			s = s[i+1:]
		}
	}
	if s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || total+d < total {
			return 0, fmt.Errorf("invalid duration %q (want e.g. 24h, 7d, 2w)", orig)
		}
		total += d
	}
	return total, nil
}

// ParseWhen parses a since/until value: a duration back from now ("24h",
// "7d"), "now", a date ("2026-11-01", local midnight), a local time
// ("2026-11-01T10:00:00", "2026-11-01 10:00") or an RFC 3339 time.
func ParseWhen(s string, now time.Time) (time.Time, error) {
	if s == "now" {
		return now, nil
	}
	if d, err := ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02T15:04:05", s, time.Local); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02 15:04", s, time.Local); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, time.Local); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("invalid time %q (want a duration like 24h or 7d, a date like 2026-11-01, or an RFC 3339 time)", truncate(s))
}

// Bounds resolves since and until into [since, until): since defaults to
// defSince, until to now.
func Bounds(since, until, defSince string, now time.Time, name Name) (time.Time, time.Time, error) {
	if since == "" {
		since = defSince
	}
	lo, err := ParseWhen(since, now)
	if err != nil {
		return lo, now, fmt.Errorf("%s: %w", name("since"), err)
	}
	hi := now
	if until != "" {
		if hi, err = ParseWhen(until, now); err != nil {
			return lo, hi, fmt.Errorf("%s: %w", name("until"), err)
		}
	}
	if !lo.Before(hi) {
		return lo, hi, fmt.Errorf("%s %s is not before %s %s", name("since"), lo.Format(time.RFC3339), name("until"), hi.Format(time.RFC3339))
	}
	return lo, hi, nil
}

// Domain validates a domain filter: "" (all), example.com, or
// *.example.com for the domain and its subdomains. It returns the normal
// form (lowercase, A-labels).
func Domain(s string, name Name) (string, error) {
	if s == "" {
		return "", nil
	}
	wild := strings.HasPrefix(s, "*.")
	k, err := policyd.NormalizeKey(strings.TrimPrefix(s, "*."))
	if err != nil || strings.HasPrefix(k, ".") || strings.HasPrefix(k, "[") {
		return "", fmt.Errorf("invalid %s %q (want example.com, or *.example.com for it and its subdomains)", name("domain"), truncate(s))
	}
	if wild {
		return "*." + k, nil
	}
	return k, nil
}

// Parse resolves a whole window.
func Parse(since, until, domain, defSince string, now time.Time, name Name) (store.Window, error) {
	lo, hi, err := Bounds(since, until, defSince, now, name)
	if err != nil {
		return store.Window{}, err
	}
	dom, err := Domain(domain, name)
	if err != nil {
		return store.Window{}, err
	}
	return store.Window{Since: lo, Until: hi, Domain: dom}, nil
}

// truncate keeps error messages one short line whatever the input.
func truncate(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}
