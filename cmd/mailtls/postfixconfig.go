package main

import (
	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/conffile"
	"github.com/mailtls/mailtls/postconf"
)

func postfixConfigCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "postfix-config",
		Usage: "print the main.cf lines that wire Postfix to mailtls (and check the running config)",
		UsageText: "mailtls postfix-config\n" +
			"mailtls postfix-config --via tcp\n" +
			"mailtls postfix-config --apply && systemctl reload mailtls && postfix reload\n\n" +
			"mailtls never answers weaker than Postfix alone would: when main.cf's\n" +
			"smtp_tls_security_level is stronger than may, or other policy tables are\n" +
			"listed, mailtls goes first in smtp_tls_policy_maps and answers NOTFOUND for\n" +
			"destinations without an override (default = notfound in the config file).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "via", Value: "socketmap", Usage: "`PROTOCOL` Postfix uses to ask mailtls: socketmap or tcp"},
			&cli.StringFlag{Name: "socketmap", Value: "127.0.0.1:8470", Usage: "socketmap `ADDR` mailtls listens on (or unix:PATH)"},
			&cli.StringFlag{Name: "tcp", Value: "127.0.0.1:8471", Usage: "tcp_table `ADDR` mailtls listens on"},
			&cli.StringFlag{Name: "map", Value: "tlspolicy", Usage: "socketmap map `NAME`"},
			&cli.StringFlag{Name: "postconf", Value: "postconf", Usage: "postconf `PROGRAM`"},
			&cli.StringFlag{Name: "config-dir", Usage: "Postfix configuration `DIR` (postconf -c)"},
			&cli.StringFlag{Name: "config", Value: conffile.Default, Usage: "mailtls config `FILE` that --apply sets default in"},
			&cli.BoolFlag{Name: "apply", Usage: "write the mailtls config file and run postconf -e with the merged values after printing them"},
		},
		Action: func(c *cli.Context) error { return postfixConfig(c, e) },
	}
}

func postfixConfig(c *cli.Context, e env) error {
	var ours string
	switch c.String("via") {
	case "socketmap":
		ours = postconf.SocketmapMap(c.String("socketmap"), c.String("map"))
	case "tcp":
		ours = postconf.TCPMap(c.String("tcp"))
	default:
		return usageErrorf("invalid --via %q (want socketmap or tcp)", c.String("via"))
	}
	return postconf.Configure(c.Context, postconf.Postconf{Bin: c.String("postconf"), Dir: c.String("config-dir")}, ours, c.String("config"), c.Bool("apply"), e.stdout, e.stderr)
}
