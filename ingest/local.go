package ingest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"runtime/debug"
	"strconv"

	"golang.org/x/sys/unix"
)

// CheckFiles fails early on log files that cannot be opened, before
// anything is written: a missing file, or a directory. "-" (stdin)
// passes.
func CheckFiles(files []string) error {
	for _, f := range files {
		if f == "-" {
			continue
		}
		if fi, err := os.Stat(f); err != nil {
			return err
		} else if fi.IsDir() {
			return fmt.Errorf("%s is a directory (want a log file)", f)
		}
	}
	return nil
}

// SetImportMemory sets a soft heap limit that keeps a bulk import of
// millions of lines under 100 MB (about 82 MB, with the writer's 8 MiB
// page cache); within it, the garbage is collected less often than by
// default (the live heap is about 12 MB). GOMEMLIMIT and GOGC in the
// environment (getenv) win.
func SetImportMemory(getenv func(string) string) {
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(56 << 20)
	}
	if getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}

// IsTerminal reports whether w is a terminal, where a progress bar
// (ImportOptions.Progress) may be drawn.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// ErrNoUser is a Postfix user name that is not a user of this machine.
var ErrNoUser = errors.New("no such user")

// PostfixUID is the uid of Postfix's mail_owner, given by name or uid,
// whose journal entries are believed (logparse.JournalTrust.UIDs).
func PostfixUID(name string) (uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNoUser, err)
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("uid %q is not a number", u.Uid)
	}
	return uint32(n), nil
}
