package main

import (
	"bufio"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

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
		name, value := splitConfigLine(line)
		if known != nil && (!known[name] || name == "config") {
			return nil, usageErrorf("%s:%d: unknown setting %q (want one of the command's flag names, e.g. socketmap, db, log)", path, n, name)
		}
		out[name] = value
	}
	return out, sc.Err()
}

// splitConfigLine splits a trimmed, non-comment config line into the
// setting's name and its value, without quotes.
func splitConfigLine(line string) (name, value string) {
	if i := strings.IndexAny(line, "= \t"); i >= 0 {
		name, value = strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+1:])
		value = strings.TrimSpace(strings.TrimPrefix(value, "="))
	} else {
		name, value = line, "true"
	}
	if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
		value = value[1 : len(value)-1]
	}
	return strings.TrimLeft(name, "-"), value
}

// configValue returns the value a config file gives name (the last line
// that sets it wins, as in readConfig); ok is false when no line does or
// the file does not exist.
func configValue(path, name string) (value string, ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if n, v := splitConfigLine(line); n == name {
			value, ok = v, true
		}
	}
	return value, ok, nil
}

// setConfigValue makes a config file set name to value: the first line
// that sets name is replaced, later ones are removed, and a line is added
// at the end when none does. Every other line, comments included, is kept.
// The file is replaced atomically (a temporary file in the same directory,
// synced, then renamed) and keeps its mode and owner; a new file is 0644
// and its directory is created 0755.
func setConfigValue(path, name, value string) error {
	data, err := os.ReadFile(path)
	mode, uid, gid := fs.FileMode(0o644), -1, -1
	switch {
	case err == nil:
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
	default:
		return err
	}
	return replaceFile(path, withSetting(string(data), name, value), mode, uid, gid)
}

// withSetting is the config text with name set to value (setConfigValue).
func withSetting(text, name, value string) string {
	lines := strings.SplitAfter(text, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	want := name + " = " + value + "\n"
	var out strings.Builder
	done := false
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t != "" && !strings.HasPrefix(t, "#") {
			if n, _ := splitConfigLine(t); n == name {
				if !done {
					out.WriteString(want)
					done = true
				}
				continue
			}
		}
		out.WriteString(l)
		if !strings.HasSuffix(l, "\n") {
			out.WriteString("\n")
		}
	}
	if !done {
		out.WriteString(want)
	}
	return out.String()
}

// replaceFile replaces path with text atomically, with mode and, when uid
// is not -1, the owner uid:gid (where permitted).
func replaceFile(path, text string, mode fs.FileMode, uid, gid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename: nothing to remove
	if err := writeSynced(tmp, text, mode, uid, gid); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func writeSynced(f *os.File, text string, mode fs.FileMode, uid, gid int) error {
	if _, err := f.WriteString(text); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if uid >= 0 {
		if err := f.Chown(uid, gid); err != nil && !errors.Is(err, fs.ErrPermission) {
			return err
		}
	}
	return f.Sync()
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
