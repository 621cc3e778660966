package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// defaultConfig is read when present; --config names another file, which
// must then exist.
const defaultConfig = "/etc/mailtls/mailtls.conf"

// readConfig parses a config file: one `flag = value` (or `flag value`) per
// line, where flag is any long flag name of the command without the dashes;
// `#` starts a comment line. Unknown names are errors, so that a typo does
// not silently leave a default in force; with known nil, every name is
// returned.
func readConfig(path string, known map[string]bool) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var name, value string
		if i := strings.IndexAny(line, "= \t"); i >= 0 {
			name, value = strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+1:])
			value = strings.TrimSpace(strings.TrimPrefix(value, "="))
		} else {
			name, value = line, "true"
		}
		name = strings.TrimLeft(name, "-")
		if known != nil && (!known[name] || name == "config") {
			return nil, usageErrorf("%s:%d: unknown setting %q (want one of the command's flag names, e.g. socketmap, db, log)", path, n, name)
		}
		if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		out[name] = value
	}
	return out, sc.Err()
}

// knownFlags lists every flag name visible to the command, global ones included.
func knownFlags(c *cli.Context) map[string]bool {
	known := map[string]bool{}
	for _, cc := range c.Lineage() {
		if cc.Command != nil {
			for _, f := range cc.Command.Flags {
				for _, n := range f.Names() {
					known[n] = true
				}
			}
		}
	}
	for _, f := range c.App.Flags {
		for _, n := range f.Names() {
			known[n] = true
		}
	}
	return known
}

// configPath returns the config file in force and whether it was named
// explicitly.
func configPath(c *cli.Context) (string, bool) {
	if p := c.String("config"); p != "" {
		return p, true
	}
	return defaultConfig, false
}

// loadConfig applies the config file to every flag not given on the command
// line (or, for --db, through MAILTLS_DB).
func loadConfig(c *cli.Context) error {
	path, explicit := configPath(c)
	vals, err := readConfig(path, knownFlags(c))
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		var ue *usageError
		if errors.As(err, &ue) {
			return err
		}
		return usageErrorf("config: %v", err)
	}
	for name, value := range vals {
		if c.IsSet(name) || (name == "db" && os.Getenv("MAILTLS_DB") != "") {
			continue
		}
		if err := c.Set(name, value); err != nil {
			return usageErrorf("%s: %s = %q: %v", path, name, value, err)
		}
	}
	return nil
}

// loadConfigSetting applies one setting of the config file, when it is
// there and the flag was not given, for a command (import) that shares
// the file with the daemon but has few of its flags.
func loadConfigSetting(c *cli.Context, name string) error {
	path, explicit := configPath(c)
	vals, err := readConfig(path, nil)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return usageErrorf("config: %v", err)
	}
	if v, ok := vals[name]; ok && !c.IsSet(name) {
		if err := c.Set(name, v); err != nil {
			return usageErrorf("%s: %s = %q: %v", path, name, v, err)
		}
	}
	return nil
}

var _ = fmt.Sprintf
