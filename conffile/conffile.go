// Package conffile is mailtls's config file (/etc/mailtls/mailtls.conf):
// one `flag = value` (or `flag value`) line per setting, the names those of
// the commands' long flags, `#` comment lines; read whole, and rewritten
// one setting at a time in place, keeping every other line.
package conffile

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// UnknownError is a line of the file that sets a name not known to the
// command.
type UnknownError struct {
	Path string
	Line int
	Name string
}

func (e *UnknownError) Error() string {
	return fmt.Sprintf("%s:%d: unknown setting %q (want one of the command's flag names, e.g. socketmap, db, log)", e.Path, e.Line, e.Name)
}

// Read parses a config file: one `flag = value` (or `flag value`) per
// line, where flag is any long flag name of the command without the dashes;
// `#` starts a comment line. Unknown names are errors, so that a typo does
// not silently leave a default in force; with known nil, every name is
// returned. A setting named config (the file itself) is never known.
func Read(path string, known map[string]bool) (map[string]string, error) {
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
		name, value := SplitLine(line)
		if known != nil && (!known[name] || name == "config") {
			return nil, &UnknownError{Path: path, Line: n, Name: name}
		}
		out[name] = value
	}
	return out, sc.Err()
}

// Default is the config file read when present; another one named
// must exist.
const Default = "/etc/mailtls/mailtls.conf"

// Load reads the config file at path (as Read), or, when path is "",
// Default, which may be missing: then there are no settings. file is
// the file read.
func Load(path string, known map[string]bool) (file string, vals map[string]string, err error) {
	if path != "" {
		vals, err = Read(path, known)
		return path, vals, err
	}
	vals, err = Read(Default, known)
	if errors.Is(err, fs.ErrNotExist) {
		return Default, nil, nil
	}
	return Default, vals, err
}

// Bool turns Postfix-style yes and no (tlsrpt = yes), as main.cf writes
// them, into true and false; other values are returned as they are.
func Bool(value string) string {
	switch strings.ToLower(value) {
	case "yes":
		return "true"
	case "no":
		return "false"
	}
	return value
}

// SplitLine splits a trimmed, non-comment config line into the
// setting's name and its value, without quotes.
func SplitLine(line string) (name, value string) {
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

// Value returns the value a config file gives name (the last line
// that sets it wins, as in Read); ok is false when no line does or
// the file does not exist.
func Value(path, name string) (value string, ok bool, err error) {
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
		if n, v := SplitLine(line); n == name {
			value, ok = v, true
		}
	}
	return value, ok, nil
}

// Set makes a config file set name to value: the first line
// that sets name is replaced, later ones are removed, and a line is added
// at the end when none does. Every other line, comments included, is kept.
// The file is replaced atomically (a temporary file in the same directory,
// synced, then renamed) and keeps its mode and owner; a new file is 0644
// and its directory is created 0755.
func Set(path, name, value string) error {
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

// withSetting is the config text with name set to value (Set).
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
			if n, _ := SplitLine(t); n == name {
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
