package main

import (
	"errors"
	"maps"
	"os"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/conffile"
)

// defaultConfig is read when present; --config names another file, which
// must then exist.
const defaultConfig = conffile.Default

// configFile reads the config file in force (conffile.Load of --config);
// a setting not in known is a usage error.
func configFile(c *cli.Context, known map[string]bool) (string, map[string]string, error) {
	path, vals, err := conffile.Load(c.String("config"), known)
	return path, vals, unknownSetting(err)
}

// unknownSetting makes a conffile.UnknownError a usage error.
func unknownSetting(err error) error {
	var ue *conffile.UnknownError
	if errors.As(err, &ue) {
		return usageErrorf("%s", ue.Error())
	}
	return err
}

// loadError is a config file that cannot be read, as a usage error.
func loadError(err error) error {
	var ue *usageError
	if errors.As(err, &ue) {
		return err
	}
	return usageErrorf("config: %v", err)
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

// loadConfig applies the config file to every flag not given on the command
// line (or, for --db, through MAILTLS_DB).
func loadConfig(c *cli.Context) error {
	own, known := configNames(c)
	path, vals, err := configFile(c, known)
	if err != nil {
		return loadError(err)
	}
	for name, value := range vals {
		if !own[name] || c.IsSet(name) || (name == "db" && os.Getenv("MAILTLS_DB") != "") {
			continue
		}
		v, isBool := value, isBoolFlag(c, name)
		if isBool {
			v = conffile.Bool(value)
		}
		if err := c.Set(name, v); err != nil {
			if isBool {
				return usageErrorf("%s: %s = %q: want yes or no", path, name, value)
			}
			return usageErrorf("%s: %s = %q: %v", path, name, value, err)
		}
	}
	return nil
}

// isBoolFlag reports whether name is a boolean flag of the command, which
// the config file may set with yes and no as well.
func isBoolFlag(c *cli.Context, name string) bool {
	for _, f := range c.Command.Flags {
		if _, ok := f.(*cli.BoolFlag); ok && slices.Contains(f.Names(), name) {
			return true
		}
	}
	return false
}

// loadConfigSetting applies one setting of the config file, when it is
// there and the flag was not given, for a command (import) that shares
// the file with the daemon but has few of its flags.
func loadConfigSetting(c *cli.Context, name string) error {
	path, vals, err := configFile(c, nil)
	if err != nil {
		return loadError(err)
	}
	if v, ok := vals[name]; ok && !c.IsSet(name) {
		if err := c.Set(name, v); err != nil {
			return usageErrorf("%s: %s = %q: %v", path, name, v, err)
		}
	}
	return nil
}
