package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

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
			age, err := parseRetention(c.String("older-than"), "--older-than")
			if err != nil {
				return err
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			before := time.Now().Add(-age)
			if c.Bool("dry-run") {
				res, err := st.PruneDryRun(c.Context, before)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "Would delete %s deliveries logged before %s (UTC). Nothing changed (--dry-run).\n",
					num(res.Deleted), res.Horizon.Format(time.DateOnly))
				return nil
			}
			res, err := st.Prune(c.Context, before)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "Deleted %s deliveries logged before %s (UTC). Reports keep the daily totals of those days.\n",
				num(res.Deleted), res.Horizon.Format(time.DateOnly))
			return nil
		},
	}
}

// parseRetention parses an age to keep deliveries for (flag names it in
// errors): a duration of at least one day, since whole days are pruned.
func parseRetention(s, flag string) (time.Duration, error) {
	d, err := parseDuration(s)
	if err != nil {
		return 0, usageErrorf("%s: %v", flag, err)
	}
	if d < 24*time.Hour {
		return 0, usageErrorf("%s %s is less than one day (want e.g. 400d or 52w: whole days are deleted)", flag, s)
	}
	return d, nil
}

// fitToHorizon tells the user, on stderr, how deleted deliveries (mailtls
// prune) change window w, and returns the window actually answered: raw
// listings (deliveries, downgrades) start at the horizon; reports keep
// whole days before it, so a bound before it moves inward to a midnight.
func fitToHorizon(ctx context.Context, e env, st pruner, w store.Window, listing bool) (store.Window, error) {
	h, err := st.Horizon(ctx)
	if err != nil || h.IsZero() {
		return w, err
	}
	day := h.Format(time.DateOnly)
	if listing {
		if w.Since.Before(h) {
			fmt.Fprintf(e.stderr, "mailtls: note: deliveries before %s (UTC) were deleted (mailtls prune); this output starts there\n", day)
			w.Since = h
		}
		return w, nil
	}
	s, u := store.FitWindow(w.Since, w.Until, h)
	if s.Before(u) && (!s.Equal(w.Since) || !u.Equal(w.Until)) {
		w.Since, w.Until = s, u
		fmt.Fprintf(e.stderr, "mailtls: note: deliveries before %s (UTC) were deleted (mailtls prune); only whole days are kept before then, so the report covers %s\n",
			day, describeWindow(w))
	}
	return w, nil
}
