package main

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/daemon"
	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/published"
	"github.com/mailtls/mailtls/store"
)

func lookupCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "lookup",
		Usage:     "show the answer Postfix would get for a next-hop, and the source and evidence behind it",
		ArgsUsage: "KEY",
		UsageText: "mailtls lookup example.com\n" +
			"mailtls lookup a.b.corp.example         # .corp.example wildcard?\n" +
			"mailtls lookup '[mx.example.com]:587'   # transport next-hop, exact match only\n" +
			"mailtls lookup gmail.com                     # with the daemon's cached DANE/MTA-STS answer\n" +
			"mailtls lookup --resolve gmail.com           # looked up now\n" +
			"mailtls lookup --sources override gmail.com  # overrides and the default only",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "default", Value: "may", Usage: "default answer, as given to serve (a LEVEL or notfound)"},
			&cli.BoolFlag{Name: "resolve", Usage: "look up DANE and MTA-STS now (DNS and HTTPS) instead of reading the daemon's cache; nothing is stored"},
			formatFlag("text", "text|json"),
		}, publishedFlags()...),
		Action: func(c *cli.Context) error { return lookup(c, e) },
	}
}

func lookup(c *cli.Context, e env) error {
	if c.NArg() != 1 {
		return usageErrorf("lookup takes exactly one KEY (e.g. mailtls lookup example.com)")
	}
	if err := checkFormat(c.String("format"), "text", "json"); err != nil {
		return err
	}
	def, err := parseDefault(c.String("default"))
	if err != nil {
		return err
	}
	srcs, err := parseSources(c.String("sources"))
	if err != nil {
		return err
	}
	if c.Bool("resolve") && !srcs.Published() {
		return usageErrorf("--resolve looks up DANE and MTA-STS: add dane or mta-sts to --sources (e.g. --sources override,dane,mta-sts)")
	}
	key, err := policyd.NormalizeKey(c.Args().First())
	if err != nil {
		return usageErrorf("%v", err)
	}
	return withStore(c, func(st *store.Store) error {
		var src policyd.Source
		if srcs.Override {
			src = daemon.StoreSource{Store: st}
		}
		ans, err := published.Lookup(c.Context, key, def, src, time.Now(), srcs.Published(), func() (*published.Result, error) {
			res, err := newPublished(c, srcs, published.ReadOnly(st), nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				return nil, err
			}
			return res.Show(c.Context, key, c.Bool("resolve"), func(err error) { fmt.Fprintf(e.stderr, "mailtls: warning: %v\n", err) })
		})
		if err != nil {
			return err
		}
		return ans.Write(e.stdout, c.String("format") == "json")
	})
}
