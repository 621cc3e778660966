package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/store"
	win "github.com/mailtls/mailtls/window"
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

// parseDuration accepts Go durations plus days and weeks (win.ParseDuration).
func parseDuration(s string) (time.Duration, error) { return win.ParseDuration(s) }

// parseWhen parses a --since/--until value (win.ParseWhen).
func parseWhen(s string, now time.Time) (time.Time, error) { return win.ParseWhen(s, now) }

// window resolves --since/--until into [since, until).
func window(c *cli.Context, defSince string) (since, until time.Time, err error) {
	since, until, err = win.Bounds(c.String("since"), c.String("until"), defSince, time.Now(), win.Flag)
	if err != nil {
		return since, until, &usageError{msg: err.Error()}
	}
	return since, until, nil
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}
