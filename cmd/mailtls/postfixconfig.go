package main

import (
	"fmt"
	"io"

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
			&cli.StringFlag{Name: "config", Value: defaultConfig, Usage: "mailtls config `FILE` that --apply sets default in"},
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
	pc := postconf.Postconf{Bin: c.String("postconf"), Dir: c.String("config-dir")}
	st, available := pc.State(c.Context)
	if !available {
		fmt.Fprintln(e.stderr, "warning: postconf not available: printing the lines without checking the running configuration")
	}
	w := postconf.Plan(st, ours)
	for _, msg := range w.Warnings {
		fmt.Fprintf(e.stderr, "warning: %s\n", msg)
	}
	confPath := c.String("config")
	curDef, set, err := conffile.Value(confPath, "default")
	if err != nil {
		return fmt.Errorf("read %s: %w", confPath, err)
	}
	if !set {
		curDef = "may" // the flag's default
	}
	w.PlanDefault(confPath, curDef)
	if !printWiring(e.stdout, w, confPath, ours) || !c.Bool("apply") {
		return nil
	}
	if !available {
		return fmt.Errorf("cannot --apply: postconf is not available")
	}
	return applyWiring(e.stdout, pc, w, confPath)
}

// printWiring prints the plan; false when there is nothing to change.
func printWiring(out io.Writer, w postconf.Wiring, confPath, ours string) bool {
	for _, d := range w.Decisions {
		fmt.Fprintf(out, "# %s\n", d)
	}
	if len(w.Settings) == 0 && !w.SetDefault {
		fmt.Fprintln(out, "# main.cf is already wired to mailtls; nothing to add.")
		return false
	}
	if len(w.Settings) > 0 {
		fmt.Fprintln(out, "# Add to main.cf, then run: postfix reload")
		for _, s := range w.Settings {
			fmt.Fprintf(out, "%s = %s\n", s.Name, s.Value)
		}
	}
	if w.SetDefault {
		fmt.Fprintf(out, "# Set in %s, then reload mailtls (systemctl reload mailtls) before postfix reload:\n", confPath)
		fmt.Fprintln(out, "default = notfound")
	}
	fmt.Fprintf(out, "# Check: postmap -q example.com %s\n", ours)
	fmt.Fprintln(out, "# If mailtls is down, Postfix defers outbound mail (it does not send without policy).")
	return true
}

// applyWiring writes the plan: mailtls's answer first, since main.cf must
// not put mailtls before the other tables while it still answers may for
// every key.
func applyWiring(out io.Writer, pc postconf.Postconf, w postconf.Wiring, confPath string) error {
	if w.SetDefault {
		if err := conffile.Set(confPath, "default", "notfound"); err != nil {
			return fmt.Errorf("write %s: %w", confPath, err)
		}
		fmt.Fprintf(out, "# wrote default = notfound to %s\n", confPath)
	}
	if len(w.Settings) > 0 {
		if err := pc.Edit(w.Settings); err != nil {
			return err
		}
		fmt.Fprintln(out, "# applied to main.cf with postconf -e")
	}
	if w.SetDefault {
		fmt.Fprintln(out, "# now run: systemctl reload mailtls && postfix reload")
	} else {
		fmt.Fprintln(out, "# now run: postfix reload")
	}
	return nil
}
