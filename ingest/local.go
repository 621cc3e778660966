package ingest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mailtls/mailtls/logparse"
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

// importMemory is what a bulk import may keep in memory besides the
// binary's own pages (about 21 MB): the Go heap and the store's own memory
// in the process (store.Store.CacheBytes). It keeps an import of millions
// of lines under 100 MB: 79 MB peak RSS for 1M lines into SQLite, whose
// page cache and C heap take 16 MiB of it (so the Go heap gets 48 MiB; 48
// rather than 56: the same import time, 5 interleaved runs, 1.13 against
// 1.12 s, for 8 MB less RSS), and 81 MB for 4.9M lines into PostgreSQL,
// where all of it is Go heap (64 MiB: 20-25% less CPU for the import than
// with 48, which ran 121 collections).
const importMemory = 64 << 20

// SetImportMemory sets a soft heap limit of importMemory less storeCache
// (the bytes the store keeps in the process outside the Go heap); within
// it, the garbage is collected less often than by default (the live heap
// is about 16 MB). GOMEMLIMIT and GOGC in the environment (getenv) win.
func SetImportMemory(getenv func(string) string, storeCache int64) {
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(importMemory - storeCache)
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

// PostfixTrust is the rule for journal entries: the uid of Postfix's
// mail_owner user (by name or uid) and root. When strict is false and the
// user was not given, a missing user is not an error: only root is
// trusted (an import of a file that may hold no journal entry at all).
// The errors start with the quoted user, for the caller to prefix with
// the option's name.
func PostfixTrust(user string, given, strict bool) (logparse.JournalTrust, error) {
	uid, err := PostfixUID(user)
	switch {
	case err == nil:
		return logparse.JournalTrust{UIDs: []uint32{uid}}, nil
	case !errors.Is(err, ErrNoUser):
		return logparse.JournalTrust{}, fmt.Errorf("%q: %v", user, err)
	case !strict && !given:
		return logparse.JournalTrust{}, nil
	}
	return logparse.JournalTrust{}, fmt.Errorf("%q: no such user (want Postfix's mail_owner, see postconf -h mail_owner, by name or uid)", user)
}

// DescribeTrust names the trusted non-root uid of t, made by PostfixTrust
// from user, for messages: "(NAME, uid N)", "(uid N)", or "(user NAME not
// found)"; the caller says which option gave it.
func DescribeTrust(user string, t logparse.JournalTrust) string {
	if len(t.UIDs) == 0 {
		return fmt.Sprintf("(user %q not found)", user)
	}
	if user != strconv.Itoa(int(t.UIDs[0])) {
		return fmt.Sprintf("(%s, uid %d)", user, t.UIDs[0])
	}
	return fmt.Sprintf("(uid %d)", t.UIDs[0])
}

// CheckJournalUnit checks a unit name to read the journal of: journalctl
// would add ".service" to a bare name, but the trust rule compares
// _SYSTEMD_UNIT with the name as given, so the name must be whole.
func CheckJournalUnit(u string) error {
	if !strings.Contains(u, ".") || strings.ContainsAny(u, " \t\n/") {
		return fmt.Errorf("%q: want a full unit name such as postfix.service or postfix@-.service", u)
	}
	return nil
}

// JournalDir checks a directory of journal files and makes it absolute.
// The errors are to follow the option's name: `is empty (…)`, `"DIR": …`.
func JournalDir(dir string) (string, error) {
	const want = "want the directory that holds the *.journal files, e.g. /var/log/journal"
	if dir == "" {
		return "", fmt.Errorf("is empty (%s)", want)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("%q: %v", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("%q: %v (%s)", dir, errors.Unwrap(err), want)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%q is not a directory (%s)", dir, want)
	}
	return abs, nil
}
