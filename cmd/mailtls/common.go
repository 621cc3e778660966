package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/store"
)

// openStore opens the database named by --db (created on first use).
func openStore(c *cli.Context) (*store.Store, error) {
	path := c.String("db")
	if path == "" {
		return nil, usageErrorf("empty --db path (want a file path, or set MAILTLS_DB)")
	}
	st, err := store.Open(c.Context, path)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	return st, nil
}

// parseDuration accepts Go durations ("36h", "90m") plus days and weeks
// ("7d", "2w", "1d12h").
func parseDuration(s string) (time.Duration, error) {
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

// parseWhen parses a --since/--until value: a duration back from now ("24h",
// "7d"), a date ("2026-11-01", local midnight) or an RFC 3339 time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "now" {
		return now, nil
	}
	if d, err := parseDuration(s); err == nil {
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

// window resolves --since/--until into [since, until).
func window(c *cli.Context, defSince string) (since, until time.Time, err error) {
	now := time.Now()
	s := c.String("since")
	if s == "" {
		s = defSince
	}
	if since, err = parseWhen(s, now); err != nil {
		return since, until, usageErrorf("--since: %v", err)
	}
	until = now
	if u := c.String("until"); u != "" {
		if until, err = parseWhen(u, now); err != nil {
			return since, until, usageErrorf("--until: %v", err)
		}
	}
	if !since.Before(until) {
		return since, until, usageErrorf("--since %s is not before --until %s", since.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	return since, until, nil
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}
