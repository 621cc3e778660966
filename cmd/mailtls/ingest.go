package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/ingest"
	"github.com/mailtls/mailtls/logparse"
)

// internalRelaysFlag is --internal-relays, for import, follow and run.
func internalRelaysFlag() cli.Flag {
	return &cli.StringFlag{Name: "internal-relays", Usage: "count deliveries to these relays as internal hops, like those to 127.0.0.1, ::1 and unix sockets: " +
		"a comma-separated `LIST` of ADDR, PREFIX (10.0.0.0/8), [ADDR]:PORT, HOST or HOST:PORT"}
}

// internalRelays parses --internal-relays.
func internalRelays(c *cli.Context) (*logparse.InternalRelays, error) {
	r, err := logparse.ParseInternalRelays([]string{c.String("internal-relays")})
	if err != nil {
		return nil, usageErrorf("--internal-relays: %v", strings.TrimPrefix(err.Error(), "logparse: "))
	}
	return r, nil
}

func importCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "parse mail log files (plain, .gz or - for stdin) into the database",
		ArgsUsage: "FILE...",
		UsageText: "mailtls import /var/log/mail.log.2.gz /var/log/mail.log.1 /var/log/mail.log\n" +
			"journalctl -u postfix@- -o json | mailtls import -\n" +
			"docker compose logs --timestamps postfix | mailtls import -   # kubectl logs too\n\n" +
			"Give rotated files oldest first. Importing the same lines twice adds nothing, so\n" +
			"after an interruption (Ctrl-C) run the same import again to add the rest.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar and no summary"},
			internalRelaysFlag(),
			hostFlag(),
			&cli.StringFlag{Name: "config", Usage: "config `FILE` to read internal-relays and host from (default /etc/mailtls/mailtls.conf when present)"},
			postfixUserFlag(),
		},
		Action: func(c *cli.Context) error { return importAction(c, e) },
	}
}

// importAction is `mailtls import FILE...`.
func importAction(c *cli.Context, e env) error {
	if c.NArg() == 0 {
		return usageErrorf("import needs at least one FILE (or - for stdin)")
	}
	for _, name := range []string{"internal-relays", "host"} {
		if err := conf.ApplySetting(c, name); err != nil {
			return err
		}
	}
	relays, err := internalRelays(c)
	if err != nil {
		return err
	}
	files := c.Args().Slice()
	if err := ingest.CheckFiles(files); err != nil {
		return usageErrorf("%v", err)
	}
	trust, err := importTrust(c)
	if err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	ingest.SetImportMemory(e.getenv, st.CacheBytes())
	if _, err := setWriteHost(c, st); err != nil {
		return err
	}
	opts := ingest.ImportOptions{Stdin: e.stdin, Relays: relays, Trust: trust}
	if !c.Bool("quiet") && ingest.IsTerminal(e.stderr) {
		opts.Progress = e.stderr
	}
	res, err := ingest.Import(c.Context, st.Bulk(), files, opts)
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("import interrupted after %d lines; %d deliveries are stored; run the same import again to add the rest (deliveries already stored are skipped)", res.Lines(), res.Committed)
	}
	if err != nil {
		return err
	}
	if !c.Bool("quiet") {
		printImportSummary(c, e, st, res)
	}
	return nil
}

// importTrust is --postfix-user for import: the user is looked up at the
// import's first journal entry (ingest.ImportOptions.Trust), so an import
// of syslog files never asks NSS, unless the flag was given, which is
// checked at once.
func importTrust(c *cli.Context) (func() (logparse.JournalTrust, error), error) {
	if c.IsSet("postfix-user") {
		t, err := journalTrust(c, false)
		if err != nil {
			return nil, err
		}
		return func() (logparse.JournalTrust, error) { return t, nil }, nil
	}
	return func() (logparse.JournalTrust, error) { return journalTrust(c, false) }, nil
}

// printImportSummary prints what an import read and stored, and notes on
// stderr what looks like missing TLS logging or a wrong --postfix-user.
func printImportSummary(c *cli.Context, e env, st ingest.Pruner, res ingest.Result) {
	var horizon time.Time
	if res.Old > 0 {
		horizon, _ = st.Horizon(c.Context)
	}
	fmt.Fprintln(e.stdout, res.Summary(horizon))
	if res.Stats.TLSLines == 0 && res.Stats.Deliveries > 0 {
		fmt.Fprintln(e.stderr, "mailtls: note: "+ingest.TLSLoggingHint)
	}
	if n := res.Untrusted.Count(logparse.JournalBadUID); n > 0 {
		fmt.Fprintf(e.stderr, "mailtls: note: %d smtp/lmtp journal entries came from a _UID other than root's and --postfix-user's %s; "+
			"if Postfix runs as another user (here or where the journal was written), give it with --postfix-user NAME|UID\n", n, ingest.DescribeTrust(c.String("postfix-user"), res.Trust))
	}
}
