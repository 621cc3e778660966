// Package cliargs reorders a command line for urfave/cli v2, so that flags
// may stand anywhere, before or after the positional arguments.
package cliargs

import (
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// Reorder lets flags go anywhere, as in
// `mailtls policy set example.com encrypt --note "x"` or
// `mailtls --db x.db report`: urfave/cli v2 stops parsing flags at the first
// positional argument and knows a command's flags only after its name, so
// every flag is moved right after the command path. A literal "--" ends
// flag processing.
func Reorder(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	valued := valueFlags(app.Commands, map[string]bool{})
	for _, f := range app.Flags {
		addValueFlag(valued, f)
	}
	path := []string{args[0]}
	var flags, pos []string
	cmds := app.Commands
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && valued[name] && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		if len(pos) == 0 {
			if found := find(cmds, a); found != nil {
				path = append(path, a)
				cmds = found.Subcommands
				continue
			}
		}
		pos = append(pos, a)
	}
	return append(append(path, flags...), pos...)
}

// find returns the last of cmds named name, or nil.
func find(cmds []*cli.Command, name string) *cli.Command {
	var found *cli.Command
	for _, c := range cmds {
		if c.HasName(name) {
			found = c
		}
	}
	return found
}

// valueFlags collects the names of flags that take a value, in any command.
func valueFlags(cmds []*cli.Command, out map[string]bool) map[string]bool {
	for _, c := range cmds {
		for _, f := range c.Flags {
			addValueFlag(out, f)
		}
		valueFlags(c.Subcommands, out)
	}
	return out
}

func addValueFlag(out map[string]bool, f cli.Flag) {
	if _, isBool := f.(*cli.BoolFlag); isBool {
		return
	}
	for _, n := range f.Names() {
		out[n] = true
	}
}

// Walk calls fn for every command of cmds and of their subcommands,
// each before its subcommands.
func Walk(cmds []*cli.Command, fn func(*cli.Command)) {
	for _, c := range cmds {
		fn(c)
		Walk(c.Subcommands, fn)
	}
}

// FlagNames lists every flag name visible to the command of c: its own,
// its parents' and the app's.
func FlagNames(c *cli.Context) map[string]bool {
	known := map[string]bool{}
	for _, cc := range c.Lineage() {
		if cc.Command != nil {
			addNames(known, cc.Command.Flags)
		}
	}
	addNames(known, c.App.Flags)
	return known
}

func addNames(out map[string]bool, flags []cli.Flag) {
	for _, f := range flags {
		for _, n := range f.Names() {
			out[n] = true
		}
	}
}

// IsBool reports whether name is a boolean flag of cmd.
func IsBool(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		if _, ok := f.(*cli.BoolFlag); ok && slices.Contains(f.Names(), name) {
			return true
		}
	}
	return false
}
