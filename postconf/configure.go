package postconf

import (
	"context"
	"fmt"
	"io"

	"github.com/mailtls/mailtls/conffile"
)

// Configure is `mailtls postfix-config`: it plans how the map ours joins
// the main.cf that pc reads (Plan), and the default answer of the mailtls
// config file at confPath (PlanDefault), prints the plan on out, one line
// per decision, with warnings on errw, and with apply writes it.
func Configure(ctx context.Context, pc Postconf, ours, confPath string, apply bool, out, errw io.Writer) error {
	st, available := pc.State(ctx)
	if !available {
		fmt.Fprintln(errw, "warning: postconf not available: printing the lines without checking the running configuration")
	}
	w := Plan(st, ours)
	for _, msg := range w.Warnings {
		fmt.Fprintf(errw, "warning: %s\n", msg)
	}
	curDef, set, err := conffile.Value(confPath, "default")
	if err != nil {
		return fmt.Errorf("read %s: %w", confPath, err)
	}
	if !set {
		curDef = "may" // the flag's default
	}
	w.PlanDefault(confPath, curDef)
	if !w.print(out, confPath, ours) || !apply {
		return nil
	}
	if !available {
		return fmt.Errorf("cannot --apply: postconf is not available")
	}
	return w.apply(out, pc, confPath)
}

// print prints the plan; false when there is nothing to change.
func (w Wiring) print(out io.Writer, confPath, ours string) bool {
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

// apply writes the plan: mailtls's answer first, since main.cf must not
// put mailtls before the other tables while it still answers may for
// every key.
func (w Wiring) apply(out io.Writer, pc Postconf, confPath string) error {
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
