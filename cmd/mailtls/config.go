package main

import (
	"errors"
	"maps"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/conffile"
	"github.com/mailtls/mailtls/internal/cliargs"
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

// configNames returns the command's own flag names, and the names a
// config file may hold: those and the settings of the tlsrpt commands,
// which share the file with the daemon.
func configNames(c *cli.Context) (own, known map[string]bool) {
	own = cliargs.FlagNames(c)
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
		v, isBool := value, cliargs.IsBool(c.Command, name)
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
