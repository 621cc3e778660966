package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"

	"github.com/urfave/cli/v2"
)

func postfixConfigCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "postfix-config",
		Usage: "print the main.cf lines that wire Postfix to mailtls (and check the running config)",
		UsageText: "mailtls postfix-config\n" +
			"mailtls postfix-config --via tcp\n" +
			"mailtls postfix-config --apply && postfix reload",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "via", Value: "socketmap", Usage: "`PROTOCOL` Postfix uses to ask mailtls: socketmap or tcp"},
			&cli.StringFlag{Name: "socketmap", Value: "127.0.0.1:8470", Usage: "socketmap `ADDR` mailtls listens on (or unix:PATH)"},
			&cli.StringFlag{Name: "tcp", Value: "127.0.0.1:8471", Usage: "tcp_table `ADDR` mailtls listens on"},
			&cli.StringFlag{Name: "map", Value: "tlspolicy", Usage: "socketmap map `NAME`"},
			&cli.StringFlag{Name: "postconf", Value: "postconf", Usage: "postconf `PROGRAM`"},
			&cli.StringFlag{Name: "config-dir", Usage: "Postfix configuration `DIR` (postconf -c)"},
			&cli.BoolFlag{Name: "apply", Usage: "run postconf -e with the merged values after printing them"},
		},
		Action: func(c *cli.Context) error {
			var ours string
			switch c.String("via") {
			case "socketmap":
				a := c.String("socketmap")
				if strings.HasPrefix(a, "unix:") {
					ours = fmt.Sprintf("socketmap:%s:%s", a, c.String("map"))
				} else {
					ours = fmt.Sprintf("socketmap:inet:%s:%s", a, c.String("map"))
				}
			case "tcp":
				ours = "tcp:" + c.String("tcp")
			default:
				return usageErrorf("invalid --via %q (want socketmap or tcp)", c.String("via"))
			}
			pc := postconf{bin: c.String("postconf"), dir: c.String("config-dir")}
			cur, available := pc.read("smtp_tls_loglevel", "smtp_tls_policy_maps", "smtp_tls_security_level")
			var warnings []string
			settings := [][2]string{}

			if !available {
				warnings = append(warnings, "postconf not available: printing the lines without checking the running configuration")
			}
			// smtp_tls_security_level: the answer for keys we return NOTFOUND for
			// and the level Postfix uses when the policy map is not consulted.
			if lvl, set := cur["smtp_tls_security_level"]; !available || !set || lvl == "" {
				if available {
					warnings = append(warnings, "smtp_tls_security_level is unset (Postfix default: no TLS at all); setting it to may")
				}
				settings = append(settings, [2]string{"smtp_tls_security_level", "may"})
			} else if lvl == "none" {
				warnings = append(warnings, "smtp_tls_security_level = none: mail goes out without TLS wherever the policy map is not used")
			}
			if ll, set := cur["smtp_tls_loglevel"]; !available || !set || ll == "" || ll == "0" {
				if available {
					warnings = append(warnings, "smtp_tls_loglevel = 0: Postfix logs no TLS summary lines, so mailtls cannot know which deliveries were encrypted; setting it to 1")
				}
				settings = append(settings, [2]string{"smtp_tls_loglevel", "1"})
			}
			maps := splitMaps(cur["smtp_tls_policy_maps"])
			merged := mergeMaps(maps, ours)
			if len(maps) > 0 && !contains(maps, ours) {
				warnings = append(warnings, fmt.Sprintf("existing smtp_tls_policy_maps = %s; mailtls answers every key, so it goes last and the existing maps keep priority (better: mailtls policy import FILE, then drop the old map)", strings.Join(maps, ", ")))
			}
			if !contains(maps, ours) {
				settings = append(settings, [2]string{"smtp_tls_policy_maps", strings.Join(merged, ", ")})
			}
			for _, w := range warnings {
				fmt.Fprintf(e.stderr, "warning: %s\n", w)
			}
			if len(settings) == 0 {
				fmt.Fprintln(e.stdout, "# main.cf is already wired to mailtls; nothing to add.")
				return nil
			}
			fmt.Fprintln(e.stdout, "# Add to main.cf, then run: postfix reload")
			for _, s := range settings {
				fmt.Fprintf(e.stdout, "%s = %s\n", s[0], s[1])
			}
			fmt.Fprintf(e.stdout, "# Check: postmap -q example.com %s\n", ours)
			fmt.Fprintln(e.stdout, "# If mailtls is down, Postfix defers outbound mail (it does not send without policy).")
			if !c.Bool("apply") {
				return nil
			}
			if !available {
				return fmt.Errorf("cannot --apply: postconf is not available")
			}
			var args []string
			for _, s := range settings {
				args = append(args, s[0]+" = "+s[1])
			}
			if err := pc.edit(args); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "# applied with postconf -e; now run: postfix reload")
			return nil
		},
	}
}

type postconf struct{ bin, dir string }

func (p postconf) args(extra ...string) []string {
	if p.dir != "" {
		return append([]string{"-c", p.dir}, extra...)
	}
	return extra
}

// read returns the explicitly set (postconf -n) values of names; ok is false
// when postconf cannot be run.
func (p postconf) read(names ...string) (map[string]string, bool) {
	out, err := exec.Command(p.bin, p.args(append([]string{"-n"}, names...)...)...).Output()
	if err != nil {
		if _, lerr := exec.LookPath(p.bin); lerr != nil {
			return nil, false
		}
		// postconf -n exits non-zero for unknown names only; treat as unset.
	}
	vals := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok {
			vals[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return vals, true
}

func (p postconf) edit(settings []string) error {
	var stderr bytes.Buffer
	cmd := exec.Command(p.bin, p.args(append([]string{"-e"}, settings...)...)...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("postconf -e failed: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// splitMaps splits a Postfix map list (comma and/or whitespace separated).
func splitMaps(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

// mergeMaps puts ours after the existing maps: Postfix stops at the first
// map that has the key, and mailtls has every key (it answers the default).
func mergeMaps(existing []string, ours string) []string {
	if contains(existing, ours) {
		return existing
	}
	return append(append([]string{}, existing...), ours)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
