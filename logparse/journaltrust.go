package logparse

import (
	"bytes"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// JournalTrust is the rule that decides whether a journal entry that claims
// to come from a Postfix smtp or lmtp client did come from one.
//
// The claim is SYSLOG_IDENTIFIER (with SYSLOG_PID and MESSAGE), which the
// sender chooses: any local user can run "logger -t postfix/smtp" and write a
// delivery line. Fields whose names start with "_" are set by journald itself
// and cannot be chosen by the sender (systemd.journal-fields(7)): _PID, _UID
// and _GID from the socket's credentials, _COMM and _SYSTEMD_UNIT from /proc.
// An entry claims to be a client when its SYSLOG_IDENTIFIER is a client tag
// ("*/smtp" or "*/lmtp", as isClientTag), the only entries from which the
// correlator makes deliveries; every other entry is passed on unchecked, as
// it cannot make or change a delivery. A claiming entry is believed only if
// each of the fields below occurs at most once, as a string, and
//
//   - _UID is present and is 0 or one of UIDs. Postfix's smtp and lmtp run as
//     its mail_owner ("postfix"), or as root when master.cf marks them
//     unprivileged=n. A missing _UID means journald did not receive the entry
//     from a local process (it was imported or relayed, for example by
//     systemd-journal-remote from export format that lacked it): such an entry
//     is not believed, because nothing vouches for it.
//   - _COMM, when present, is the program named by the tag's last part
//     ("smtp" for "postfix-out/smtp"): Postfix runs each daemon as its own
//     binary, so the kernel's name of the process is the program name. _COMM
//     is read from /proc when the entry arrives, and is missing when the
//     process had already exited (an smtp process at its max_use logs its
//     last delivery and exits); _UID then decides alone.
//   - Units is empty, or _SYSTEMD_UNIT is missing or one of Units.
//
// The correlator keys sessions by _PID when present, not by SYSLOG_PID
// (parseJournal), so a believed entry is also tied to the process that sent
// it. A repeated field (journalctl prints it as an array) is not believed:
// which of the values would count is not something to guess.
type JournalTrust struct {
	// UIDs are the user ids, besides root's, of the processes believed:
	// Postfix's mail_owner (see "postconf -h mail_owner").
	UIDs []uint32
	// Units, when not empty, are the systemd units Postfix runs in
	// (postfix.service, postfix@-.service, or glob patterns such as
	// postfix@*.service). JournalFollower also passes them to journalctl as
	// --unit filters.
	Units []string
}

// JournalVerdict is what JournalTrust.Check says of one entry.
type JournalVerdict uint8

const (
	// JournalBelieved: from Postfix, or not a client entry (not checked).
	JournalBelieved JournalVerdict = iota
	// JournalNoUID: no _UID, so not received by journald from a local process.
	JournalNoUID
	// JournalBadUID: _UID is neither root's nor one of JournalTrust.UIDs.
	JournalBadUID
	// JournalBadComm: _COMM is not the program the tag names.
	JournalBadComm
	// JournalBadUnit: _SYSTEMD_UNIT is not one of JournalTrust.Units.
	JournalBadUnit
	// JournalAmbiguous: SYSLOG_IDENTIFIER, _UID, _COMM or _SYSTEMD_UNIT
	// occurs more than once, or is not a string.
	JournalAmbiguous
)

var verdictNames = [...]string{"believed", "no_uid", "uid", "comm", "unit", "ambiguous"}

func (v JournalVerdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// Check returns the verdict on one "journalctl -o json" line.
func (t JournalTrust) Check(line []byte) JournalVerdict {
	ident, present, ok := oneField(line, "SYSLOG_IDENTIFIER")
	if !ok {
		return JournalAmbiguous
	}
	if !present || !isClientTag([]byte(ident)) {
		return JournalBelieved
	}
	uid, present, ok := oneField(line, "_UID")
	comm, haveComm, okComm := oneField(line, "_COMM")
	unit, haveUnit, okUnit := oneField(line, "_SYSTEMD_UNIT")
	switch {
	case !ok || !okComm || !okUnit:
		return JournalAmbiguous
	case !present:
		return JournalNoUID
	case !t.uidTrusted(uid):
		return JournalBadUID
	case haveComm && comm != ident[strings.LastIndexByte(ident, '/')+1:]:
		return JournalBadComm
	case haveUnit && len(t.Units) > 0 && !matchUnit(t.Units, unit):
		return JournalBadUnit
	}
	return JournalBelieved
}

// oneField returns the value of a field that occurs at most once, as a
// string. ok is false when the name occurs more than once, or once with a
// value that is not a string (journalctl prints a field that an entry has
// several times as an array): which value counts would be a guess. The name
// is counted as a literal, so a string value equal to it also counts, which
// errs on the side of not believing.
func oneField(line []byte, name string) (val string, present, ok bool) {
	n := bytes.Count(line, []byte(`"`+name+`"`))
	if n == 0 {
		return "", false, true
	}
	if n > 1 {
		return "", true, false
	}
	val, ok = journalField(line, name)
	return val, true, ok
}

func (t JournalTrust) uidTrusted(s string) bool {
	if len(s) == 0 || len(s) > 10 || !allDigits([]byte(s)) {
		return false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return false
	}
	if n == 0 {
		return true
	}
	for _, u := range t.UIDs {
		if uint64(u) == n {
			return true
		}
	}
	return false
}

// matchUnit reports whether unit is one of units, which may be glob
// patterns as journalctl --unit takes them ("postfix@*.service").
func matchUnit(units []string, unit string) bool {
	for _, u := range units {
		if ok, err := path.Match(u, unit); u == unit || err == nil && ok {
			return true
		}
	}
	return false
}

// JournalSkips counts the entries that JournalTrust did not believe, by
// verdict.
type JournalSkips struct{ n [len(verdictNames)]int64 }

// Add counts one entry with verdict v (JournalBelieved is not counted).
func (s *JournalSkips) Add(v JournalVerdict) {
	if v != JournalBelieved && int(v) < len(s.n) {
		s.n[v]++
	}
}

// Count is the number of entries skipped with verdict v.
func (s JournalSkips) Count(v JournalVerdict) int64 {
	if v == JournalBelieved || int(v) >= len(s.n) {
		return 0
	}
	return s.n[v]
}

// Total is the number of entries skipped.
func (s JournalSkips) Total() int64 {
	var t int64
	for _, n := range s.n {
		t += n
	}
	return t
}

// String lists the non-zero counts by reason, e.g. "uid=3 comm=1", or "none".
func (s JournalSkips) String() string {
	var parts []string
	for v, n := range s.n {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", JournalVerdict(v), n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}
