package main

import (
	"bufio"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/output"
	"github.com/mailtls/mailtls/store"
)

func windowFlags(defSince string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "since", Usage: "start of the window: a duration back from now (24h, 7d), a date or an RFC 3339 `TIME` (default " + defSince + ")"},
		&cli.StringFlag{Name: "until", Usage: "end of the window: same forms as --since, or `TIME` (default now)"},
		&cli.StringFlag{Name: "domain", Usage: "only this recipient `DOMAIN`; *.example.com means example.com and all its subdomains"},
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
		Flags: append(windowFlags("all time"), hostFilterFlag(), formatFlag("jsonl", "jsonl|csv")),
		Action: func(c *cli.Context) error {
			format := c.String("format")
			if err := checkFormat(format, "jsonl", "csv"); err != nil {
				return err
			}
			var since, until time.Time
			if c.String("since") != "" || c.String("until") != "" {
				var err error
				if since, until, err = window(c, "100000d"); err != nil {
					return err
				}
			}
			dom, err := domainFilter(c.String("domain"))
			if err != nil {
				return err
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
			if _, err := fitToHorizon(c.Context, e, st, store.Window{Since: since, Until: until}, true); err != nil {
				return err
			}
			bw := bufio.NewWriterSize(e.stdout, 64<<10)
			defer bw.Flush()
			dw, err := output.NewDeliveryWriter(bw, format)
			if err != nil {
				return err
			}
			err = st.Deliveries(c.Context, store.Filter{Since: since, Until: until, Domain: dom, Host: host}, dw.Write)
			if ferr := dw.Flush(); err == nil {
				err = ferr
			}
			return err
		},
	}
}
