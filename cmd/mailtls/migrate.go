package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

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

// migrateAction is `mailtls migrate`: store.Copy from --from into --to.
func migrateAction(c *cli.Context, e env) error {
	from, to := c.String("from"), c.String("to")
	opt, err := migrateOptions(c, e, from, to)
	if err != nil {
		return err
	}
	src, err := store.Open(c.Context, from)
	if err != nil {
		return fmt.Errorf("open --from %s: %w", from, err)
	}
	defer src.Close()
	dst, err := store.Open(c.Context, to)
	if errors.Is(err, store.ErrBadInput) {
		return usageErrorf("--to: %s", badInputText(err))
	}
	if err != nil {
		return fmt.Errorf("open --to %s: %w", store.RedactDSN(to), err)
	}
	defer dst.Close()
	res, err := store.Copy(c.Context, src, dst, opt)
	if errors.Is(err, store.ErrConflict) {
		return usageErrorf("%s", err.Error())
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "migrated %s into %s: %d overrides (%d conflicting), %d history entries, %s deliveries (%s already present), %d checkpoints, %s rollup rows of pruned days\n",
		from, dst.Path(), res.Overrides, res.Conflicts, res.History, num(res.Deliveries), num(res.Skipped), res.Checkpoints, num(res.Rollups))
	return nil
}

// migrateOptions checks migrate's flags and turns them into store.Copy's
// options.
func migrateOptions(c *cli.Context, e env, from, to string) (store.CopyOptions, error) {
	var opt store.CopyOptions
	if from == "" || to == "" {
		return opt, usageErrorf("migrate needs --from PATH.db and --to postgres://... (both)")
	}
	if fi, err := os.Stat(from); err != nil || !fi.Mode().IsRegular() {
		return opt, usageErrorf("--from %q: not an existing SQLite database file", from)
	}
	if store.RedactDSN(from) == store.RedactDSN(to) {
		return opt, usageErrorf("--from and --to are the same database")
	}
	switch opt.Prefer = c.String("prefer"); opt.Prefer {
	case "", store.PreferSource, store.PreferTarget:
	default:
		return opt, usageErrorf("--prefer %q; accepted: source, target", opt.Prefer)
	}
	var err error
	if opt.Host, err = hostFilter(c); err != nil {
		return opt, err
	}
	if !c.Bool("quiet") {
		opt.Progress = func(stage string, done, total int64) {
			fmt.Fprintf(e.stderr, "migrate: %s %s of %s\n", stage, num(done), num(total))
		}
	}
	return opt, nil
}
