package main

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/conffile"
)

// defaultConfig is read when present; --config names another file, which
// must then exist.
const defaultConfig = "/etc/mailtls/mailtls.conf"

// readConfig reads the config file at path (conffile.Read); a setting
// not in known is a usage error.
func readConfig(path string, known map[string]bool) (map[string]string, error) {
	vals, err := conffile.Read(path, known)
	var ue *conffile.UnknownError
	if errors.As(err, &ue) {
		return nil, usageErrorf("%s", ue.Error())
	}
	return vals, err
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

// configNames returns the command's own flag names, and the names a
// config file may hold: those and the settings of the tlsrpt commands,
// which share the file with the daemon.
func configNames(c *cli.Context) (own, known map[string]bool) {
	own = knownFlags(c)
	known = maps.Clone(own)
	for _, n := range tlsrptSettings {
		known[n] = true
	}
	return own, known
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
	own, known := configNames(c)
	vals, err := readConfig(path, known)
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
		if !own[name] || c.IsSet(name) || (name == "db" && os.Getenv("MAILTLS_DB") != "") {
			continue
		}
		v, isBool := configBool(c, name, value)
		if err := c.Set(name, v); err != nil {
			if isBool {
				return usageErrorf("%s: %s = %q: want yes or no", path, name, value)
			}
			return usageErrorf("%s: %s = %q: %v", path, name, value, err)
		}
	}
	return nil
}

// configBool turns Postfix-style yes and no into true and false for a
// boolean flag (tlsrpt = yes), as main.cf writes them, and reports
// whether name is a boolean flag.
func configBool(c *cli.Context, name, value string) (string, bool) {
	for _, f := range c.Command.Flags {
		if _, ok := f.(*cli.BoolFlag); ok && slices.Contains(f.Names(), name) {
			switch strings.ToLower(value) {
			case "yes":
				return "true", true
			case "no":
				return "false", true
			}
			return value, true
		}
	}
	return value, false
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
