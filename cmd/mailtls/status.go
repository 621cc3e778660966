package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/report"
)

func statusCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "what the database holds, and whether the log follower keeps up (for monitoring)",
		UsageText: "mailtls status\n" +
			"mailtls status --format json\n" +
			"mailtls status --stale 10m    # exit 1 if the follower has stopped recording\n" +
			"mailtls status --host mx2     # one fleet host only\n\n" +
			"It lists every fleet host in the database (deliveries, last commit, lag since\n" +
			"it, stale or not) and every follower.\n" +
			"A follower is stale when its log file has lines it has not recorded and it has\n" +
			"recorded nothing for --stale: it is stopped or stuck. Exit 1 then, and also when\n" +
			"a destination forced to encrypt, dane-only, fingerprint, verify or secure got\n" +
			"plaintext since --since (Postfix is not asking mailtls for it); 0 otherwise.\n" +
			"It also prints the published MTA-STS enforce and DANE policies that deliveries\n" +
			"since --since would have failed (see `mailtls report policies`); those warnings\n" +
			"do not change the exit code.",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "stale", Value: 5 * time.Minute, Usage: "a follower with unrecorded lines and no commit for `DURATION` is stale (exit 1)"},
			&cli.StringFlag{Name: "since", Value: "24h", Usage: "look for plaintext sent to forced destinations since `TIME` (a duration back from now, a date or RFC 3339)"},
			&cli.StringFlag{Name: "host", Usage: "only the followers of fleet host `NAME` (default: every host)"},
			formatFlag("table", "table|json"),
		},
		Action: func(c *cli.Context) error { return runStatus(c, e) },
	}
}

func runStatus(c *cli.Context, e env) error {
	format := c.String("format")
	if err := checkFormat(format, "table", "json"); err != nil {
		return err
	}
	if c.Duration("stale") <= 0 {
		return usageErrorf("--stale must be more than 0 (e.g. 5m)")
	}
	host, err := hostFilter(c)
	if err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	now := time.Now()
	since, err := report.ParseWhen(c.String("since"), now)
	if err != nil {
		return usageErrorf("--since: %v", err)
	}
	return report.WriteStatus(c.Context, st, e.stdout, format, report.StatusQuery{Now: now, Since: since, Stale: c.Duration("stale"), Host: host})
}
