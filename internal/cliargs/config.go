package cliargs

import (
	"errors"
	"fmt"
	"maps"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/conffile"
)

// UsageError marks an error caused by bad input (flags, arguments, the
// config file); the command exits with its usage code for it.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef is a UsageError with a formatted message.
func Usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// Config is how a command reads the config file (conffile, --config): the
// names it may hold besides the command's own flags (Shared: settings of
// other commands that share the file), and the environment, for --db
// given through MAILTLS_DB.
type Config struct {
	Shared []string
	Getenv func(string) string
}

// Names returns c's own flag names, and every name the config file may
// hold: those and Shared.
func (cf Config) Names(c *cli.Context) (own, known map[string]bool) {
	own = FlagNames(c)
	known = maps.Clone(own)
	for _, n := range cf.Shared {
		known[n] = true
	}
	return own, known
}

// File reads the config file in force (conffile.Load of --config); a
// setting not in known is a usage error, and so is a file that cannot
// be read.
func (cf Config) File(c *cli.Context, known map[string]bool) (string, map[string]string, error) {
	path, vals, err := conffile.Load(c.String("config"), known)
	var ue *conffile.UnknownError
	switch {
	case err == nil:
		return path, vals, nil
	case errors.As(err, &ue):
		return "", nil, Usagef("%s", ue.Error())
	}
	return "", nil, Usagef("config: %v", err)
}

// Apply sets every flag of c that the config file names and the command
// line did not (nor, for --db, MAILTLS_DB). A bool takes yes or no.
func (cf Config) Apply(c *cli.Context) error {
	own, known := cf.Names(c)
	path, vals, err := cf.File(c, known)
	if err != nil {
		return err
	}
	for name, value := range vals {
		if !own[name] || c.IsSet(name) || (name == "db" && cf.Getenv != nil && cf.Getenv("MAILTLS_DB") != "") {
			continue
		}
		v, isBool := value, IsBool(c.Command, name)
		if isBool {
			v = conffile.Bool(value)
		}
		if err := c.Set(name, v); err != nil {
			if isBool {
				return Usagef("%s: %s = %q: want yes or no", path, name, value)
			}
			return Usagef("%s: %s = %q: %v", path, name, value, err)
		}
	}
	return nil
}

// ApplySetting applies one setting of the config file, when it is there
// and the flag was not given: for a command (import, tlsrpt) that shares
// the file with the daemon but has few of its flags.
func (cf Config) ApplySetting(c *cli.Context, name string) error {
	path, vals, err := cf.File(c, nil)
	if err != nil {
		return err
	}
	if v, ok := vals[name]; ok && !c.IsSet(name) {
		if err := c.Set(name, v); err != nil {
			return Usagef("%s: %s = %q: %v", path, name, v, err)
		}
	}
	return nil
}
