package main

import (
	"log/slog"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/store"
)

func newLeveledLogger(c *cli.Context, e env, lv *slog.LevelVar) (*slog.Logger, error) {
	if err := lv.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usageErrorf("invalid --log-level %q (want debug, info, warn or error)", c.String("log-level"))
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: lv})), nil
}

// startLong is the start of a long-running command: the config file, a
// logger at --log-level (which level then changes live) and the
// database, which the caller closes.
func startLong(c *cli.Context, e env, level *slog.LevelVar) (*slog.Logger, *store.Store, error) {
	if err := conf.Apply(c); err != nil {
		return nil, nil, err
	}
	log, err := newLeveledLogger(c, e, level)
	if err != nil {
		return nil, nil, err
	}
	st, err := openStore(c)
	if err != nil {
		return nil, nil, err
	}
	return log, st, nil
}
