package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/policyd"
)

func lookupCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "lookup",
		Usage:     "show the answer Postfix would get for a next-hop, and the rule behind it",
		ArgsUsage: "KEY",
		UsageText: "mailtls lookup example.com\n" +
			"mailtls lookup a.b.corp.example         # .corp.example wildcard?\n" +
			"mailtls lookup '[mx.example.com]:587'   # transport next-hop, exact match only",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "default", Value: "may", Usage: "default answer, as given to serve (a LEVEL or notfound)"},
			formatFlag("text", "text|json"),
		},
		Action: func(c *cli.Context) error {
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
			key, err := policyd.NormalizeKey(c.Args().First())
			if err != nil {
				return usageErrorf("%v", err)
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			b := policyd.NewBuilder(def, 0)
			if err := (storeSource{st}).Overrides(c.Context, b.Add); err != nil {
				return err
			}
			snap := b.Snapshot()
			r := snap.Lookup(key, time.Now())
			rule := r.Rule
			if r.Rule == "default" || r.Rule == "notfound" {
				if len(r.Expired) > 0 {
					rule = "expired"
				}
			}
			if c.String("format") == "json" {
				answer := "NOTFOUND"
				if r.Found {
					answer = "OK " + r.Value
				}
				return writeJSON(e.stdout, map[string]any{
					"key": key, "found": r.Found, "value": r.Value, "answer": answer,
					"rule": rule, "matched": r.Key, "expired": r.Expired,
				})
			}
			answer := "NOTFOUND (main.cf smtp_tls_security_level applies)"
			if r.Found {
				answer = r.Value
			}
			var why string
			switch r.Rule {
			case "exact":
				why = "exact override " + r.Key
			case "wildcard":
				why = "wildcard override " + r.Key
			default:
				why = "default: no override matches"
			}
			if len(r.Expired) > 0 {
				why += "; expired override ignored: " + strings.Join(r.Expired, ", ")
			}
			fmt.Fprintf(e.stdout, "%s  %s  (%s)\n", key, answer, why)
			return nil
		},
	}
}
