package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/overrides"
	"github.com/mailtls/mailtls/store"
)

func policyCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "manage per-destination TLS policy overrides",
		Description: "Overrides replace the default answer (may) for one destination.\n" +
			"Keys: example.com (exact), .example.com (every subdomain, not example.com itself),\n" +
			"[mx.example.com]:587 (a transport next-hop, exact).",
		Subcommands: []*cli.Command{
			policySetCommand(e),
			{
				Name:      "rm",
				Usage:     "remove an override",
				ArgsUsage: "KEY",
				UsageText: "mailtls policy rm example.com",
				Action:    func(c *cli.Context) error { return policyRm(c, e) },
			},
			{
				Name:      "list",
				Usage:     "list overrides",
				UsageText: "mailtls policy list [--format table|json|csv]",
				Flags:     []cli.Flag{formatFlag("table", "table|json|csv")},
				Action:    func(c *cli.Context) error { return policyList(c, e) },
			},
			{
				Name:      "history",
				Usage:     "show the change history of overrides",
				ArgsUsage: "[KEY]",
				UsageText: "mailtls policy history [example.com]",
				Flags:     []cli.Flag{formatFlag("table", "table|json|csv")},
				Action:    func(c *cli.Context) error { return policyHistory(c, e) },
			},
			{
				Name:      "import",
				Usage:     "import a Postfix smtp_tls_policy table (hash:/texthash: source format)",
				ArgsUsage: "FILE",
				UsageText: "mailtls policy import /etc/postfix/tls_policy\n\n" +
					"Every line is validated first; any error rejects the whole file.",
				Action: func(c *cli.Context) error { return policyImport(c, e) },
			},
			{
				Name:      "export",
				Usage:     "write the overrides as a Postfix table source file",
				UsageText: "mailtls policy export > tls_policy",
				Action: func(c *cli.Context) error {
					return withStore(c, func(st *store.Store) error { return overrides.Export(c.Context, st, time.Now(), e.stdout) })
				},
			},
		},
	}
}

// withStore opens the database for f and closes it after.
func withStore(c *cli.Context, f func(*store.Store) error) error {
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	return f(st)
}

func policyRm(c *cli.Context, e env) error {
	key, err := overrides.Key(c.Args().Slice(), false, "policy rm takes exactly one KEY (e.g. mailtls policy rm example.com)")
	if err != nil {
		return err
	}
	return withStore(c, func(st *store.Store) error {
		return overrides.Remove(c.Context, st, key, store.Actor(e.getenv), e.stdout)
	})
}

func policyList(c *cli.Context, e env) error {
	format := c.String("format")
	if err := checkFormat(format, "table", "json", "csv"); err != nil {
		return err
	}
	return withStore(c, func(st *store.Store) error { return overrides.List(c.Context, st, format, time.Now(), e.stdout) })
}

func policyHistory(c *cli.Context, e env) error {
	format := c.String("format")
	if err := checkFormat(format, "table", "json", "csv"); err != nil {
		return err
	}
	key, err := overrides.Key(c.Args().Slice(), true, "policy history takes at most one KEY")
	if err != nil {
		return err
	}
	return withStore(c, func(st *store.Store) error { return overrides.History(c.Context, st, key, format, e.stdout) })
}

func policyImport(c *cli.Context, e env) error {
	imp, err := overrides.ReadImport(c.Args().Slice(), e.stdin)
	if err != nil {
		return err
	}
	return withStore(c, func(st *store.Store) error { return imp.Write(c.Context, st, store.Actor(e.getenv), e.stdout) })
}

func policySetCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "set",
		Usage:     "create or change an override",
		ArgsUsage: "KEY LEVEL [ATTR=VALUE ...]",
		UsageText: "mailtls policy set KEY LEVEL [ATTR=VALUE ...] [--note TEXT] [--expires 30d] [--dry-run]\n\n" +
			"mailtls policy set example.com encrypt\n" +
			"mailtls policy set .corp.example verify match=hostname:nexthop --note 'ticket 42'\n" +
			"mailtls policy set '[mx.example.net]:587' encrypt protocols=>=TLSv1.2 --expires 30d\n" +
			"mailtls policy set example.com encrypt --dry-run   # what would history say?\n\n" +
			"LEVEL is one of none may encrypt dane dane-only fingerprint verify secure.\n" +
			"Attributes: protocols ciphers exclude match servername tafile connection_reuse enable_rpk.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "note", Usage: "free-text `NOTE` stored with the override"},
			&cli.StringFlag{Name: "expires", Usage: "expire the override after `DURATION` (e.g. 30d, 12h)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "show what the delivery history says would have happened, change nothing"},
			&cli.StringFlag{Name: "since", Value: "30d", Usage: "history window for --dry-run: a `DURATION` back from now, or a date"},
		},
		Action: func(c *cli.Context) error { return policySet(c, e) },
	}
}

func policySet(c *cli.Context, e env) error {
	set, err := overrides.ParseSet(c.Args().Slice(), c.String("note"), c.String("expires"), time.Now())
	if err != nil {
		return err
	}
	return withStore(c, func(st *store.Store) error {
		if c.Bool("dry-run") {
			return set.DryRun(c.Context, st, c.String("since"), time.Now(), e.stdout)
		}
		return set.Write(c.Context, st, store.Actor(e.getenv), e.stdout)
	})
}

func formatFlag(def, accepted string) cli.Flag {
	return &cli.StringFlag{Name: "format", Value: def, Usage: "output `FORMAT`: " + accepted}
}
