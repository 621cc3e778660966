package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/report"
	"github.com/mailtls/mailtls/store"
)

func migrateCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "copy a host's SQLite database into the fleet's PostgreSQL (idempotent)",
		UsageText: "mailtls migrate --from /var/lib/mailtls/mailtls.db --to postgres://mailtls@db.example.net/mailtls [--host NAME]\n\n" +
			"Copies overrides, their history, deliveries, followers' checkpoints and the rollups of\n" +
			"pruned days. Running it again adds nothing; a run killed half-way is finished by running\n" +
			"it again. Overrides the target holds with another policy stop it unless --prefer says\n" +
			"which to keep. Run it before starting the host's follower on the new database.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "the SQLite database `PATH` to copy from"},
			&cli.StringFlag{Name: "to", Usage: "the database to copy into: a postgres:// `DSN` (or another SQLite file)"},
			&cli.StringFlag{Name: "host", Usage: "the fleet host `NAME` of the source's deliveries and checkpoints in the target (default: their name in the source, else this machine's host name)"},
			&cli.StringFlag{Name: "prefer", Usage: "on overrides both hold with another policy: `SIDE` source (replace the target's) or target (keep it)"},
			&cli.BoolFlag{Name: "quiet", Usage: "no progress on stderr"},
		},
		Action: func(c *cli.Context) error { return migrateAction(c, e) },
	}
}

// migrateAction is `mailtls migrate`: store.Migrate from --from into --to.
func migrateAction(c *cli.Context, e env) error {
	q := store.MigrateRequest{From: c.String("from"), To: c.String("to"), Prefer: c.String("prefer"), Host: c.String("host")}
	if !c.Bool("quiet") {
		q.Progress = func(stage string, done, total int64) {
			fmt.Fprintf(e.stderr, "migrate: %s %s of %s\n", stage, report.Num(done), report.Num(total))
		}
	}
	res, target, err := store.Migrate(c.Context, q)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "migrated %s into %s: %d overrides (%d conflicting), %d history entries, %s deliveries (%s already present), %d checkpoints, %s rollup rows of pruned days\n",
		q.From, target, res.Overrides, res.Conflicts, res.History, report.Num(res.Deliveries), report.Num(res.Skipped), res.Checkpoints, report.Num(res.Rollups))
	return nil
}
