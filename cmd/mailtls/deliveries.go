package main

import (
	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/report"
)

func windowFlags(defSince string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "since", Usage: "start of the window: a duration back from now (24h, 7d), a date or an RFC 3339 `TIME` (default " + defSince + ")"},
		&cli.StringFlag{Name: "until", Usage: "end of the window: same forms as --since, or `TIME` (default now)"},
		&cli.StringFlag{Name: "domain", Usage: "only this recipient `DOMAIN` (an IDN in either form: bücher.example or xn--bcher-kva.example); *.example.com means example.com and all its subdomains"},
	}
}

func deliveriesCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "deliveries",
		Usage: "print recorded deliveries, one per line",
		UsageText: "mailtls deliveries --since 24h\n" +
			"mailtls deliveries --domain '*.example.com' --format csv > example.csv\n" +
			"mailtls deliveries --since 7d | jq 'select(.tls == false)'\n" +
			"mailtls deliveries --host mx2 --since 1h",
		Flags:  append(windowFlags("all time"), hostFilterFlag(), formatFlag("jsonl", "jsonl|csv")),
		Action: func(c *cli.Context) error { return runView(c, e, report.CheckDeliveries, "jsonl", "csv") },
	}
}
