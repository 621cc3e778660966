package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/report"
	"github.com/mailtls/mailtls/store"
)

// openStore opens the database named by --db (created on first use): a
// SQLite file, or a PostgreSQL DSN. A malformed DSN is a usage error.
func openStore(c *cli.Context) (*store.Store, error) {
	path := c.String("db")
	if path == "" {
		return nil, usageErrorf("empty --db path (want a file path or a postgres:// DSN, or set MAILTLS_DB)")
	}
	st, err := store.Open(c.Context, path)
	if errors.Is(err, store.ErrBadInput) {
		return nil, usageErrorf("--db: %v", err)
	}
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", dbName(c), err)
	}
	return st, nil
}

// dbName is --db as it may be shown: without the password of a DSN.
func dbName(c *cli.Context) string { return store.RedactDSN(c.String("db")) }

// The window and duration syntax is the report package's, shared with the
// HTML report's URL parameters.
var (
	parseDuration = report.ParseDuration
	parseWhen     = report.ParseWhen
	rfc           = report.RFC3339
	num           = report.Num // thousands separators, as on the HTML page
)

// window resolves --since/--until into [since, until).
func window(c *cli.Context, defSince string) (since, until time.Time, err error) {
	q := report.Query{Since: c.String("since"), Until: c.String("until")}
	return q.Span(time.Now(), defSince, "--")
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}
