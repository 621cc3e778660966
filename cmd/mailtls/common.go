package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/ingest"
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
	if err != nil && !errors.Is(err, store.ErrUnavailable) { // that one names the database already
		return nil, fmt.Errorf("open database %s: %w", dbName(c), err)
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// dbName is --db as it may be shown: without the password of a DSN.
func dbName(c *cli.Context) string { return store.RedactDSN(c.String("db")) }

// hostFlag is --host on the commands that write deliveries (run, follow,
// import): the fleet host they write as.
func hostFlag() cli.Flag {
	return &cli.StringFlag{Name: "host", Usage: "the fleet host `NAME` to store deliveries and the log position as (default: this machine's host name); " +
		"one database may hold many hosts, and the same log line from two hosts counts twice"}
}

// hostFilterFlag is --host on the commands that read them.
func hostFilterFlag() cli.Flag {
	return &cli.StringFlag{Name: "host", Usage: "only the deliveries stored by fleet host `NAME` (default: every host)"}
}

// setWriteHost makes st write as --host, or as this machine's host name,
// and returns the name.
func setWriteHost(c *cli.Context, st ingest.HostSetter) (string, error) {
	name, err := hostFilter(c)
	if err != nil {
		return "", err
	}
	if name == "" {
		if name, err = store.DefaultHost(); err != nil {
			return "", usageErrorf("%s", store.BadInputText(err))
		}
	}
	if err := st.SetHost(c.Context, name); err != nil {
		return "", err
	}
	return name, nil
}

// hostFilter validates --host of the reading commands: "" (every host)
// or a host name, lowercased.
func hostFilter(c *cli.Context) (string, error) {
	name := c.String("host")
	if name == "" {
		return "", nil
	}
	h, err := store.CheckHost(name)
	if err != nil {
		return "", usageErrorf("--host: %s", store.BadInputText(err))
	}
	return h, nil
}
