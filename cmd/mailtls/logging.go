package main

import (
	"log/slog"

	"github.com/urfave/cli/v2"
)

type slogLevelVar = slog.LevelVar

func newLeveledLogger(c *cli.Context, e env, lv *slog.LevelVar) (*slog.Logger, error) {
	if err := lv.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usageErrorf("invalid --log-level %q (want debug, info, warn or error)", c.String("log-level"))
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: lv})), nil
}
