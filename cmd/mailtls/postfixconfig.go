package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/policyd"
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
			st, available := pc.state(c.Context)
			if !available {
				fmt.Fprintln(e.stderr, "warning: postconf not available: printing the lines without checking the running configuration")
			}
			w := planWiring(st, ours)
			for _, msg := range w.warnings {
				fmt.Fprintf(e.stderr, "warning: %s\n", msg)
			}

			confPath := c.String("config")
			curDef, set, err := configValue(confPath, "default")
			if err != nil {
				return fmt.Errorf("read %s: %w", confPath, err)
			}
			if !set {
				curDef = "may" // the flag's default
			}
			setDefault := w.notfound && !strings.EqualFold(strings.TrimSpace(curDef), "notfound")
			if setDefault {
				w.decisions = append(w.decisions, fmt.Sprintf("%s: default = notfound (was %s)", confPath, curDef))
			} else if !w.notfound && strings.EqualFold(strings.TrimSpace(curDef), "notfound") {
				w.decisions = append(w.decisions, fmt.Sprintf("%s: keeping default = notfound (the same as may here: Postfix's own level is may)", confPath))
			}
			for _, d := range w.decisions {
				fmt.Fprintf(e.stdout, "# %s\n", d)
			}
			if len(w.settings) == 0 && !setDefault {
				fmt.Fprintln(e.stdout, "# main.cf is already wired to mailtls; nothing to add.")
				return nil
			}
			if len(w.settings) > 0 {
				fmt.Fprintln(e.stdout, "# Add to main.cf, then run: postfix reload")
				for _, s := range w.settings {
					fmt.Fprintf(e.stdout, "%s = %s\n", s[0], s[1])
				}
			}
			if setDefault {
				fmt.Fprintf(e.stdout, "# Set in %s, then reload mailtls (systemctl reload mailtls) before postfix reload:\n", confPath)
				fmt.Fprintln(e.stdout, "default = notfound")
			}
			fmt.Fprintf(e.stdout, "# Check: postmap -q example.com %s\n", ours)
			fmt.Fprintln(e.stdout, "# If mailtls is down, Postfix defers outbound mail (it does not send without policy).")
			if !c.Bool("apply") {
				return nil
			}
			if !available {
				return fmt.Errorf("cannot --apply: postconf is not available")
			}
			// mailtls's answer first: main.cf must not put mailtls before
			// the other tables while it still answers may for every key.
			if setDefault {
				if err := setConfigValue(confPath, "default", "notfound"); err != nil {
					return fmt.Errorf("write %s: %w", confPath, err)
				}
				fmt.Fprintf(e.stdout, "# wrote default = notfound to %s\n", confPath)
			}
			if len(w.settings) > 0 {
				var args []string
				for _, s := range w.settings {
					args = append(args, s[0]+" = "+s[1])
				}
				if err := pc.edit(args); err != nil {
					return err
				}
				fmt.Fprintln(e.stdout, "# applied to main.cf with postconf -e")
			}
			if setDefault {
				fmt.Fprintln(e.stdout, "# now run: systemctl reload mailtls && postfix reload")
			} else {
				fmt.Fprintln(e.stdout, "# now run: postfix reload")
			}
			return nil
		},
	}
}

// postfixState is what mailtls needs to know of a running main.cf.
type postfixState struct {
	level    string   // effective smtp_tls_security_level, legacy parameters resolved; "" for none by default
	loglevel string   // smtp_tls_loglevel
	maps     []string // smtp_tls_policy_maps, in order
}

// wiring is planWiring's result.
type wiring struct {
	settings  [][2]string // main.cf parameters to set, in order
	notfound  bool        // mailtls must answer NOTFOUND for destinations without an override
	decisions []string    // one line per decision taken
	warnings  []string
}

// planWiring decides how mailtls's map ours joins main.cf without making
// any destination weaker than Postfix alone would make it.
//
// Postfix stops at the first smtp_tls_policy_maps table that has a key,
// and then neither walks parent domains nor applies
// smtp_tls_security_level (smtp_tls_policy.c). mailtls answering may for
// every key is therefore right only when Postfix's own level is may or
// weaker and no other table is listed. Otherwise mailtls goes first and
// answers NOTFOUND without an override: Postfix then asks the tables after
// it for the same key, walks the parent domains itself (".example.com",
// which mailtls answers for its own .parent overrides too), and falls back
// to smtp_tls_security_level, which keeps its value.
func planWiring(st postfixState, ours string) wiring {
	var w wiring
	level := st.level
	switch level {
	case "":
		w.warnings = append(w.warnings, "smtp_tls_security_level is unset (Postfix default: no TLS at all); setting it to may")
		w.settings = append(w.settings, [2]string{"smtp_tls_security_level", "may"})
		level = "may"
	case "none":
		w.warnings = append(w.warnings, "smtp_tls_security_level = none: mail goes out without TLS wherever the policy map is not used")
	}
	if st.loglevel == "" || st.loglevel == "0" {
		w.warnings = append(w.warnings, "smtp_tls_loglevel = 0: Postfix logs no TLS summary lines, so mailtls cannot know which deliveries were encrypted; setting it to 1")
		w.settings = append(w.settings, [2]string{"smtp_tls_loglevel", "1"})
	}
	var others []string
	for _, m := range st.maps {
		if m != ours && !slices.Contains(others, m) {
			others = append(others, m)
		}
	}
	strong := policyd.AboveMay(level)
	w.notfound = strong || len(others) > 0
	if strong {
		w.decisions = append(w.decisions, fmt.Sprintf("smtp_tls_security_level = %s is stronger than may: mailtls answers NOTFOUND for destinations without an override, so %s still applies to them", level, level))
	}
	if len(others) > 0 {
		w.decisions = append(w.decisions, fmt.Sprintf("existing smtp_tls_policy_maps %s: mailtls goes first and answers NOTFOUND without an override, so these tables still decide after it, their .parent entries included", strings.Join(others, ", ")))
	}
	if !w.notfound {
		w.decisions = append(w.decisions, fmt.Sprintf("smtp_tls_security_level = %s and no other policy table: mailtls answers may for destinations without an override, as Postfix alone would", level))
	}
	want := append([]string{ours}, others...)
	if !slices.Equal(want, st.maps) {
		if slices.Contains(st.maps, ours) {
			w.decisions = append(w.decisions, "smtp_tls_policy_maps: moving mailtls first")
		}
		w.settings = append(w.settings, [2]string{"smtp_tls_policy_maps", strings.Join(want, ", ")})
	}
	return w
}

type postconf struct{ bin, dir string }

func (p postconf) args(extra ...string) []string {
	if p.dir != "" {
		return append([]string{"-c", p.dir}, extra...)
	}
	return extra
}

// state reads the parameters planWiring needs; ok is false when postconf
// cannot be run.
func (p postconf) state(ctx context.Context) (postfixState, bool) {
	v, ok := p.read(ctx, "smtp_tls_security_level", "smtp_tls_loglevel", "smtp_tls_policy_maps",
		"smtp_enforce_tls", "smtp_use_tls", "smtp_tls_enforce_peername")
	if !ok {
		return postfixState{}, false
	}
	return postfixState{level: effectiveLevel(v), loglevel: v["smtp_tls_loglevel"], maps: splitMaps(v["smtp_tls_policy_maps"])}, true
}

// effectiveLevel is the level Postfix's smtp(8) uses when no policy table
// answers: smtp_tls_security_level, or when that is empty the obsolete
// smtp_enforce_tls / smtp_use_tls (postconf(5)).
func effectiveLevel(v map[string]string) string {
	yes := func(s string) bool { return strings.EqualFold(s, "yes") }
	switch {
	case v["smtp_tls_security_level"] != "":
		return strings.ToLower(v["smtp_tls_security_level"])
	case yes(v["smtp_enforce_tls"]) && yes(v["smtp_tls_enforce_peername"]):
		return "verify"
	case yes(v["smtp_enforce_tls"]):
		return "encrypt"
	case yes(v["smtp_use_tls"]):
		return "may"
	}
	return ""
}

// read returns the values in force (postconf, defaults included) of
// names; ok is false when postconf cannot be run.
func (p postconf) read(ctx context.Context, names ...string) (map[string]string, bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p.bin, p.args(names...)...).Output()
	if err != nil {
		if _, lerr := exec.LookPath(p.bin); lerr != nil || ctx.Err() != nil {
			return nil, false
		}
		// postconf exits non-zero for unknown names only; those are unset.
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

// splitMaps splits a Postfix map list (comma and/or whitespace separated),
// keeping braced text such as inline:{ a=b, c=d } in one piece.
func splitMaps(v string) []string {
	var out []string
	depth, start := 0, -1
	for i, r := range v {
		sep := depth == 0 && strings.ContainsRune(", \t\r\n", r) // CHARS_COMMA_SP
		switch {
		case sep:
			if start >= 0 {
				out = append(out, v[start:i])
				start = -1
			}
			continue
		case r == '{':
			depth++
		case r == '}' && depth > 0:
			depth--
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 { // an unbalanced "{" runs to the end
		if tail := strings.TrimRight(v[start:], ", \t\r\n"); tail != "" {
			out = append(out, tail)
		}
	}
	return out
}
