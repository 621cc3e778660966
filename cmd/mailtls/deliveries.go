package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/store"
)

// deliveryJSON is the `deliveries --format jsonl` contract (ARCHITECTURE.md); keep
// the field names and order exact.
type deliveryJSON struct {
	Time        string          `json:"time"`
	QueueID     string          `json:"queue_id"`
	Recipient   string          `json:"recipient"`
	Domain      string          `json:"domain"`
	Relay       string          `json:"relay"`
	Status      delivery.Status `json:"status"`
	DSN         string          `json:"dsn"`
	TLS         *bool           `json:"tls"`
	TLSTrust    delivery.Trust  `json:"tls_trust"`
	TLSProtocol string          `json:"tls_protocol"`
	TLSCipher   string          `json:"tls_cipher"`
	Fallback    bool            `json:"fallback"`
	TLSFeature  string          `json:"tls_feature"` // Postfix 3.11's tls= value as logged, or ""
	Internal    bool            `json:"internal"`    // a hop inside the host (content filter, local LMTP)
	Host        string          `json:"host"`        // the fleet host that stored it (--host of run, follow, import)
}

var deliveryCSVHeader = []string{"time", "queue_id", "recipient", "domain", "relay", "status", "dsn", "tls", "tls_trust", "tls_protocol", "tls_cipher", "fallback", "tls_feature", "internal", "host"}

func toJSON(d delivery.Delivery) deliveryJSON {
	return deliveryJSON{
		Time: d.Time.UTC().Format(time.RFC3339), QueueID: d.QueueID, Recipient: d.Recipient,
		Domain: d.Domain, Relay: d.Relay, Status: d.Status, DSN: d.DSN, TLS: d.TLS,
		TLSTrust: d.TLSTrust, TLSProtocol: d.TLSProtocol, TLSCipher: d.TLSCipher, Fallback: d.Fallback,
		TLSFeature: d.TLSFeature, Internal: d.Internal, Host: d.Host,
	}
}

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
			f := store.Filter{Since: since, Until: until, Domain: dom, Host: host}
			if format == "csv" {
				cw := csv.NewWriter(bw)
				if err := cw.Write(deliveryCSVHeader); err != nil {
					return err
				}
				err := st.Deliveries(c.Context, f, func(d delivery.Delivery) error {
					tls := ""
					if d.TLS != nil {
						tls = strconv.FormatBool(*d.TLS)
					}
					return cw.Write(escapeCells([]string{d.Time.UTC().Format(time.RFC3339), d.QueueID, d.Recipient, d.Domain, d.Relay, string(d.Status), d.DSN,
						tls, string(d.TLSTrust), d.TLSProtocol, d.TLSCipher, strconv.FormatBool(d.Fallback), d.TLSFeature, strconv.FormatBool(d.Internal), d.Host}))
				})
				cw.Flush()
				if err != nil {
					return err
				}
				return cw.Error()
			}
			enc := json.NewEncoder(bw)
			enc.SetEscapeHTML(false)
			return st.Deliveries(c.Context, f, func(d delivery.Delivery) error { return enc.Encode(toJSON(d)) })
		},
	}
}
