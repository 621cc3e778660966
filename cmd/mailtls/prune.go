package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/report"
	"github.com/mailtls/mailtls/store"
)

func pruneCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "delete recorded deliveries older than an age; daily totals stay for reports",
		UsageText: "mailtls prune --older-than 400d --dry-run\n" +
			"mailtls prune --older-than 400d\n\n" +
			"Whole UTC days are deleted: every delivery before the midnight at or before\n" +
			"now minus the age. Reports keep counting those days from their daily totals;\n" +
			"`deliveries` and `report downgrades` list from that midnight on. Mail logged\n" +
			"before it is not stored again, so re-importing an old log cannot count it twice.\n" +
			"`mailtls run --keep AGE` does this once a day by itself.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "older-than", Usage: "delete deliveries older than `AGE`: a duration such as 400d or 52w (at least 1d)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "only count what would be deleted"},
		},
		Action: func(c *cli.Context) error {
			if !c.IsSet("older-than") {
				return usageErrorf("prune needs --older-than AGE, e.g. --older-than 400d")
			}
			age, err := report.ParseRetention(c.String("older-than"), "--older-than")
			if err != nil {
				return err
			}
			before := time.Now().Add(-age)
			return withStore(c, func(st *store.Store) error {
				return report.Prune(c.Context, st, before, c.Bool("dry-run"), e.stdout)
			})
		},
	}
}
