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
	key, st, err := keyAndStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	b := policyd.NewBuilder(def, 0)
	if srcs.Override {
		if err := (daemon.StoreSource{Store: st}).Overrides(c.Context, b.Add); err != nil {
			return err
		}
	}
	r := b.Snapshot().Lookup(key, time.Now())
	// The published sources, as the daemon consults them: after an
	// override miss, from its cache (or resolved now).
	ans, err := published.NewAnswer(key, r, srcs.Published(), func() (*published.Result, error) {
		return lookupPublished(c, e, srcs, st, key)
	})
	if err != nil {
		return err
	}
	if c.String("format") == "json" {
		return writeJSON(e.stdout, ans.JSON())
	}
	for _, l := range ans.Lines() {
		fmt.Fprintln(e.stdout, l)
	}
	return nil
}

// lookupPublished reads the daemon's cached answer for key (nil: none),
// or with --resolve resolves it now, storing nothing.
func lookupPublished(c *cli.Context, e env, srcs published.Sources, st published.Store, key string) (*published.Result, error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	res, err := newPublished(c, srcs, published.ReadOnly(st), nil, quiet)
	if err != nil {
		return nil, err
	}
	if _, err := res.Load(c.Context); err != nil {
		fmt.Fprintf(e.stderr, "mailtls: warning: %v\n", err)
	}
	if !c.Bool("resolve") {
		got, ok := res.Cached(key)
		if !ok {
			return nil, nil
		}
		return &got, nil
	}
	res.Start()
	got, err := res.Resolve(c.Context, key)
	res.Close()
	if err != nil {
		return nil, err
	}
	return &got, nil
}
