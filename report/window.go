package report

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mailtls/mailtls/dnsname"
	"github.com/mailtls/mailtls/store"
)

// ErrBadInput marks a window or filter the user spelled wrong. Its message
// is one line naming the parameter and what is accepted.
var ErrBadInput = errors.New("report: invalid input")

type inputError struct{ msg string }

func (e *inputError) Error() string        { return e.msg }
func (e *inputError) Is(target error) bool { return target == ErrBadInput }

func inputErrorf(format string, args ...any) error {
	return &inputError{msg: fmt.Sprintf(format, args...)}
}

// ParseRetention parses an age to keep deliveries for (flag names it in
// errors): a duration of at least one day, since whole days are pruned.
func ParseRetention(s, flag string) (time.Duration, error) {
	d, err := ParseDuration(s)
	if err != nil {
		return 0, inputErrorf("%s: %v", flag, err)
	}
	if d < 24*time.Hour {
		return 0, inputErrorf("%s %s is less than one day (want e.g. 400d or 52w: whole days are deleted)", flag, s)
	}
	return d, nil
}

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

// ParseWhen parses a --since/--until value: a duration back from now ("24h",
// "7d"), a date ("2026-11-01", local midnight) or an RFC 3339 time.
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
	return time.Time{}, fmt.Errorf("invalid time %q (want a duration like 24h or 7d, a date like 2026-11-01, or an RFC 3339 time)", s)
}

// Query is a report window as the user spelled it, in command line flags
// (--since, --until, --domain) or URL parameters (since, until, domain).
type Query struct {
	Since, Until, Domain string
}

// Span resolves Since and Until into [since, until) at now; an empty Since
// means defSince, an empty Until now. Errors name the parameter as
// prefix+"since" (prefix "--" for flags, "" for URL parameters).
func (q Query) Span(now time.Time, defSince, prefix string) (since, until time.Time, err error) {
	s := q.Since
	if s == "" {
		s = defSince
	}
	if since, err = ParseWhen(s, now); err != nil {
		return since, until, inputErrorf("%ssince: %v", prefix, err)
	}
	until = now
	if q.Until != "" {
		if until, err = ParseWhen(q.Until, now); err != nil {
			return since, until, inputErrorf("%suntil: %v", prefix, err)
		}
	}
	if !since.Before(until) {
		return since, until, inputErrorf("%ssince %s is not before %suntil %s", prefix, since.Format(time.RFC3339), prefix, until.Format(time.RFC3339))
	}
	return since, until, nil
}

// DomainFilter validates a domain filter: example.com, or *.example.com
// for the domain and all its subdomains, in A-labels or U-labels. It
// returns the normalised form, lowercase A-labels (bücher.example is
// xn--bcher-kva.example); the store matches deliveries logged in either.
func (q Query) DomainFilter(prefix string) (string, error) {
	s := strings.TrimSpace(q.Domain)
	if s == "" {
		return "", nil
	}
	wild := strings.HasPrefix(s, "*.")
	a, err := dnsname.ToASCII(strings.TrimSuffix(strings.TrimPrefix(s, "*."), "."))
	if err == nil {
		err = dnsname.Check(a)
	}
	if err != nil {
		return "", inputErrorf("invalid %sdomain %q: %v; accepted: example.com, or *.example.com for it and its subdomains, in A-labels or U-labels (xn--bcher-kva.example or bücher.example)", prefix, q.Domain, err)
	}
	if wild {
		return "*." + a, nil
	}
	return a, nil
}

// Window resolves q into a store window (see Span and DomainFilter).
func (q Query) Window(now time.Time, defSince, prefix string) (store.Window, error) {
	since, until, err := q.Span(now, defSince, prefix)
	if err != nil {
		return store.Window{}, err
	}
	dom, err := q.DomainFilter(prefix)
	if err != nil {
		return store.Window{}, err
	}
	return store.Window{Since: since, Until: until, Domain: dom}, nil
}
