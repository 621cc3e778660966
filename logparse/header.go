package logparse

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// stampKind tells how a header's time stamp is written.
type stampKind uint8

const (
	stampNone        stampKind = iota
	stampTraditional           // "Nov  8 08:08:59": RFC 3164, no year, local time
	stampISO                   // "2026-11-28T18:17:00.475607+00:00": RFC 3339
	stampUnixMicro             // journald __REALTIME_TIMESTAMP
)

// MaxLineLen is the longest line read, without its newline: by import
// (LineReader), by the file follower (its default MaxLine) and by the
// parser; longer lines are counted as skipped. Postfix truncates its own
// records at about 2000 bytes (msg_logger.c), rsyslog at 8 KiB
// (maxMessageSize) and journald at 48 KiB (LineMax), so a longer line is
// not a Postfix record, even with a container prefix, and refusing it
// keeps the memory and work per line bounded.
const MaxLineLen = 64 << 10

// header is the parsed envelope of one log line. Byte slices point into
// the line (or into the correlator's scratch buffer for journald lines)
// and are only valid until the next line is parsed.
type header struct {
	kind stampKind

	// stamp fields; year is filled by year inference for stampTraditional.
	year, mon, day, hour, min, sec, nsec int
	zoned                                bool  // ISO stamp carries an offset
	offset                               int   // ISO offset, seconds east of UTC
	usec                                 int64 // stampUnixMicro

	host []byte
	tag  []byte // program, e.g. "postfix/smtp"
	pid  int
	proc []byte // "tag[pid]" exactly as logged; nil for journald lines
	msg  []byte
}

// time returns the header's instant in UTC. loc is the zone of stamps
// without an offset (traditional syslog, ISO without offset).
func (h *header) time(loc *time.Location) time.Time {
	switch h.kind {
	case stampTraditional:
		return time.Date(h.year, time.Month(h.mon), h.day, h.hour, h.min, h.sec, 0, loc).UTC()
	case stampISO:
		if !h.zoned {
			return time.Date(h.year, time.Month(h.mon), h.day, h.hour, h.min, h.sec, h.nsec, loc).UTC()
		}
		t := time.Date(h.year, time.Month(h.mon), h.day, h.hour, h.min, h.sec, h.nsec, time.UTC)
		return t.Add(-time.Duration(h.offset) * time.Second)
	case stampUnixMicro:
		return time.UnixMicro(h.usec).UTC()
	}
	return time.Time{}
}

// parseHeader splits a raw line into header and message. scratch is reused
// for journald messages that need unescaping. It reports false when the line
// has no header it understands; such lines count as skipped.
func parseHeader(line []byte, h *header, scratch *[]byte) bool {
	*h = header{}
	if len(line) == 0 || len(line) > MaxLineLen {
		return false
	}
	if line[0] == '{' {
		return parseJournal(line, h, scratch)
	}
	// A line that starts with a stamp has no container prefix, which
	// starts with a service name and never reads as a stamp: the prefix is
	// looked for only when there is none.
	rest, ok := parseStamp(line, h)
	if !ok {
		*h = header{}
		if rest, ok = parseStamp(cutServicePrefix(line), h); !ok {
			return false
		}
	}
	if h.kind == stampISO {
		// A container runtime's stamp ("docker logs --timestamps",
		// "kubectl logs --timestamps", CRI log files) before the
		// program's own: the runtime's is kept, as it has a year and a
		// zone, which a traditional stamp has not.
		rest = cutCRIStream(rest)
		var inner header
		if r, ok := parseStamp(rest, &inner); ok {
			rest = r
		}
	}
	return parseHostTag(rest, h)
}

// Container log prefixes. "docker compose logs" (v1 "name_1", v2
// "name-1") puts the service name, padded with spaces, and "| " before
// each line, in colour on a terminal:
//
//	postfix-mailcow_1    | May  6 20:28:37 mail postfix/smtp[859]: ...
//	\x1b[36mpostfix-1  |\x1b[0m May  6 20:28:37 mail postfix/smtp[859]: ...
//
// "kubectl logs --prefix" puts "[pod/NAME/CONTAINER] ". Either may be
// followed by a runtime's RFC 3339 stamp (--timestamps), which parseHeader
// reads like any RFC 3339 stamp; CRI log files (/var/log/containers)
// have "STAMP stdout F " (cutCRIStream).
const maxServiceName = 128

// cutServicePrefix returns line without a compose or kubectl prefix.
func cutServicePrefix(line []byte) []byte {
	b := skipSGR(line)
	if len(b) > 5 && b[0] == '[' && string(b[1:5]) == "pod/" {
		if i := bytes.IndexByte(b[:min(len(b), 3*maxServiceName)], ']'); i > 0 && i+1 < len(b) && b[i+1] == ' ' && bytes.IndexByte(b[:i], ' ') < 0 {
			return b[i+2:]
		}
		return line
	}
	i := 0
	for i < len(b) && i <= maxServiceName && isServiceChar(b[i], i) {
		i++
	}
	if i == 0 || i > maxServiceName || i >= len(b) || b[i] != ' ' {
		return line
	}
	for j := i; j < len(b) && j < i+maxServiceName; j++ {
		switch b[j] {
		case ' ':
			continue
		case '|':
			rest := skipSGR(b[j+1:])
			if len(rest) > 0 && rest[0] == ' ' {
				return rest[1:]
			}
		}
		break
	}
	return line
}

func isServiceChar(c byte, i int) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', isDigit(c):
		return true
	case c == '_' || c == '-' || c == '.':
		return i > 0
	}
	return false
}

// skipSGR skips ANSI colour sequences ("\x1b[36m", "\x1b[0m").
func skipSGR(b []byte) []byte {
	for len(b) > 2 && b[0] == 0x1b && b[1] == '[' {
		j := 2
		for j < len(b) && j < 16 && (isDigit(b[j]) || b[j] == ';') {
			j++
		}
		if j >= len(b) || b[j] != 'm' {
			return b
		}
		b = b[j+1:]
	}
	return b
}

// cutCRIStream skips the "stdout F " or "stderr P " of the CRI logging
// format after its stamp. A partial line (P) is read as a line of its own:
// Postfix records are far shorter than the 16 KiB at which runtimes split.
func cutCRIStream(b []byte) []byte {
	if len(b) > 9 && (string(b[:7]) == "stdout " || string(b[:7]) == "stderr ") && (b[7] == 'F' || b[7] == 'P') && b[8] == ' ' {
		return b[9:]
	}
	return b
}

// parseStamp parses a leading syslog time stamp and the space after it.
func parseStamp(line []byte, h *header) ([]byte, bool) {
	// An optional "<PRI>" prefix, as written by some relays.
	if len(line) > 0 && line[0] == '<' {
		end := bytes.IndexByte(line[:min(len(line), 5)], '>')
		if end < 2 || !allDigits(line[1:end]) {
			return nil, false
		}
		line = line[end+1:]
	}
	if len(line) < 16 {
		return nil, false
	}
	if isDigit(line[0]) {
		return parseISO(line, h)
	}
	return parseTraditional(line, h)
}

// parseTraditional parses "Mmm dd hh:mm:ss " with the day space padded
// (syslogd: "Nov  8"), zero padded (postlogd strftime %d: "Nov 08") or,
// leniently, unpadded ("Nov 8").
func parseTraditional(b []byte, h *header) ([]byte, bool) {
	mon := parseMonth(b[:3])
	if mon == 0 || b[3] != ' ' {
		return nil, false
	}
	i := 4
	if b[i] == ' ' {
		i++
	}
	day := 0
	switch {
	case isDigit(b[i]) && isDigit(b[i+1]):
		day = int(b[i]-'0')*10 + int(b[i+1]-'0')
		i += 2
	case isDigit(b[i]) && b[i+1] == ' ':
		day = int(b[i] - '0')
		i++
	default:
		return nil, false
	}
	if day < 1 || day > 31 || len(b) < i+10 || b[i] != ' ' {
		return nil, false
	}
	i++
	hh, mm, ss, ok := parseClock(b[i : i+8])
	if !ok || b[i+8] != ' ' {
		return nil, false
	}
	h.kind = stampTraditional
	h.mon, h.day, h.hour, h.min, h.sec = mon, day, hh, mm, ss
	return b[i+9:], true
}

// parseISO parses "YYYY-MM-DD[T ]hh:mm:ss[.frac][Z|+hh:mm|+hhmm] " (RFC 3339
// as written by rsyslog and syslog-ng; the offset is optional).
func parseISO(b []byte, h *header) ([]byte, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't' && b[10] != ' ') {
		return nil, false
	}
	y, ok1 := atoiFixed(b[0:4])
	mo, ok2 := atoiFixed(b[5:7])
	d, ok3 := atoiFixed(b[8:10])
	if !ok1 || !ok2 || !ok3 || mo < 1 || mo > 12 || d < 1 || d > 31 {
		return nil, false
	}
	hh, mm, ss, ok := parseClock(b[11:19])
	if !ok {
		return nil, false
	}
	i := 19
	nsec := 0
	if b[i] == '.' || b[i] == ',' {
		i++
		start := i
		for i < len(b) && isDigit(b[i]) {
			if i-start < 9 {
				nsec = nsec*10 + int(b[i]-'0')
			}
			i++
		}
		n := i - start
		if n == 0 {
			return nil, false
		}
		for ; n < 9; n++ {
			nsec *= 10
		}
	}
	if i >= len(b) {
		return nil, false
	}
	h.kind = stampISO
	h.year, h.mon, h.day, h.hour, h.min, h.sec, h.nsec = y, mo, d, hh, mm, ss, nsec
	switch c := b[i]; c {
	case 'Z', 'z':
		h.zoned = true
		i++
	case '+', '-':
		// +hh:mm or +hhmm
		if len(b) < i+5 {
			return nil, false
		}
		oh, ok := atoiFixed(b[i+1 : i+3])
		if !ok {
			return nil, false
		}
		j := i + 3
		if b[j] == ':' {
			j++
		}
		if len(b) < j+2 {
			return nil, false
		}
		om, ok := atoiFixed(b[j : j+2])
		if !ok || oh > 23 || om > 59 {
			return nil, false
		}
		h.zoned = true
		h.offset = oh*3600 + om*60
		if c == '-' {
			h.offset = -h.offset
		}
		i = j + 2
	}
	if i >= len(b) || b[i] != ' ' {
		return nil, false
	}
	return b[i+1:], true
}

// parseHostTag parses "host tag[pid]: message" (the host may be missing,
// as in "tag[pid]: message"). Some container images log a severity
// instead of the host, padded with spaces:
//
//	2021-01-24T14:43:33.171226+00:00 INFO    postfix/smtp[138]: ...
func parseHostTag(b []byte, h *header) bool {
	sp := bytes.IndexByte(b, ' ')
	if sp <= 0 {
		return false
	}
	if tok := b[:sp]; tok[len(tok)-1] == ':' && parseTag(b, h) {
		return true
	}
	if isSeverity(b[:sp]) {
		rest := bytes.TrimLeft(b[sp:], " ")
		if parseTag(rest, h) {
			return true
		}
		h.tag, h.pid, h.proc, h.msg = nil, 0, nil, nil
	}
	h.host = b[:sp]
	return parseTag(b[sp+1:], h)
}

// isSeverity reports whether b is a syslog severity as container images
// print it in place of the host name.
func isSeverity(b []byte) bool {
	switch string(b) {
	case "EMERG", "ALERT", "CRIT", "ERR", "ERROR", "WARN", "WARNING", "NOTICE", "INFO", "DEBUG":
		return true
	}
	return false
}

// parseTag parses "name[pid]: msg" or "name: msg".
func parseTag(b []byte, h *header) bool {
	i := 0
	for i < len(b) && b[i] != '[' && b[i] != ':' && b[i] != ' ' {
		i++
	}
	if i == 0 || i >= len(b) || b[i] == ' ' {
		return false
	}
	h.tag = b[:i]
	if b[i] == '[' {
		j := i + 1
		pid := 0
		for j < len(b) && isDigit(b[j]) && j-i <= 10 {
			pid = pid*10 + int(b[j]-'0')
			j++
		}
		if j == i+1 || j+1 >= len(b) || b[j] != ']' || b[j+1] != ':' {
			return false
		}
		h.pid = pid
		h.proc = b[:j+1]
		i = j + 1
	} else {
		h.proc = b[:i]
	}
	// b[i] == ':'
	i++
	if i < len(b) {
		if b[i] != ' ' {
			return false
		}
		i++
	}
	h.msg = b[i:]
	return true
}

func parseClock(b []byte) (hh, mm, ss int, ok bool) {
	if len(b) != 8 || b[2] != ':' || b[5] != ':' {
		return 0, 0, 0, false
	}
	hh, ok1 := atoiFixed(b[0:2])
	mm, ok2 := atoiFixed(b[3:5])
	ss, ok3 := atoiFixed(b[6:8])
	if !ok1 || !ok2 || !ok3 || hh > 23 || mm > 59 || ss > 60 {
		return 0, 0, 0, false
	}
	return hh, mm, ss, true
}

func parseMonth(b []byte) int {
	switch string(b) {
	case "Jan":
		return 1
	case "Feb":
		return 2
	case "Mar":
		return 3
	case "Apr":
		return 4
	case "May":
		return 5
	case "Jun":
		return 6
	case "Jul":
		return 7
	case "Aug":
		return 8
	case "Sep":
		return 9
	case "Oct":
		return 10
	case "Nov":
		return 11
	case "Dec":
		return 12
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func allDigits(b []byte) bool {
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return len(b) > 0
}

func atoiFixed(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, len(b) > 0
}

// Journald export objects, as printed by "journalctl -o json": one JSON
// object per line, all values strings, except that a field holding bytes
// that are not valid UTF-8 is an array of numbers, a field present several
// times is an array of values, and a large field may be null.
// See systemd's JSON export format documentation.

// parseJournal extracts the fields the correlator needs without building a
// generic JSON value: __REALTIME_TIMESTAMP (microseconds), _HOSTNAME,
// SYSLOG_IDENTIFIER, _PID (else SYSLOG_PID) and MESSAGE. _PID is set by
// journald from the sender's credentials; SYSLOG_PID is whatever the sender
// wrote, so a session is keyed by the process that really logged it.
func parseJournal(line []byte, h *header, scratch *[]byte) bool {
	i := skipWS(line, 0)
	if i >= len(line) || line[i] != '{' {
		return false
	}
	i++
	var (
		haveTime       bool
		pidVal, pidAlt []byte
		msgSpan        jsonValue
		haveMsg        bool
	)
	for {
		i = skipWS(line, i)
		if i >= len(line) {
			return false
		}
		if line[i] == '}' {
			i++
			break
		}
		if line[i] != '"' {
			return false
		}
		ks, ke, _, ni, ok := scanString(line, i)
		if !ok {
			return false
		}
		i = skipWS(line, ni)
		if i >= len(line) || line[i] != ':' {
			return false
		}
		i = skipWS(line, i+1)
		v, ni, ok := scanValue(line, i)
		if !ok {
			return false
		}
		i = ni
		switch string(line[ks:ke]) {
		case "__REALTIME_TIMESTAMP":
			b := v.text(line)
			if len(b) == 0 || len(b) > 18 || !allDigits(b) {
				return false
			}
			n, _ := strconv.ParseInt(string(b), 10, 64)
			h.usec = n
			haveTime = true
		case "_HOSTNAME":
			h.host = v.plain(line)
		case "SYSLOG_IDENTIFIER":
			h.tag = v.plain(line)
		case "SYSLOG_PID":
			pidVal = v.plain(line)
		case "_PID":
			pidAlt = v.plain(line)
		case "MESSAGE":
			msgSpan, haveMsg = v, true
		}
		i = skipWS(line, i)
		if i < len(line) && line[i] == ',' {
			i++
			continue
		}
		if i < len(line) && line[i] == '}' {
			i++
			break
		}
		return false
	}
	if skipWS(line, i) != len(line) || !haveTime {
		return false
	}
	h.kind = stampUnixMicro
	if pidAlt != nil {
		pidVal = pidAlt
	}
	if len(pidVal) > 0 && len(pidVal) <= 10 && allDigits(pidVal) {
		n, _ := strconv.Atoi(string(pidVal))
		h.pid = n
	}
	if haveMsg {
		m, ok := msgSpan.bytes(line, scratch)
		if !ok {
			return false
		}
		h.msg = m
	}
	return true
}

// jsonValue is the span of one JSON value in a line.
type jsonValue struct {
	kind       byte // '"' string (start/end exclude quotes), '[' array, '{' object, 'l' literal
	start, end int
	esc        bool // string contains backslash escapes
}

// text returns a string's raw content or a literal's text (for numbers).
func (v jsonValue) text(line []byte) []byte {
	switch v.kind {
	case '"', 'l':
		if v.esc {
			return nil
		}
		return line[v.start:v.end]
	}
	return nil
}

// plain returns a string value without escapes, or the first such string
// of an array (a repeated field); otherwise nil.
func (v jsonValue) plain(line []byte) []byte {
	switch v.kind {
	case '"':
		if v.esc {
			b, ok := unescapeJSON(nil, line[v.start:v.end])
			if !ok {
				return nil
			}
			return b
		}
		return line[v.start:v.end]
	case '[':
		i := skipWS(line, v.start+1)
		if i < v.end && line[i] == '"' {
			if e, ni, ok := scanValue(line, i); ok && ni <= v.end {
				return e.plain(line)
			}
		}
	}
	return nil
}

// bytes decodes a MESSAGE value: a string, an array of byte values, or an
// array of strings (first one wins). null yields an empty message.
func (v jsonValue) bytes(line []byte, scratch *[]byte) ([]byte, bool) {
	switch v.kind {
	case '"':
		if !v.esc {
			return line[v.start:v.end], true
		}
		b, ok := unescapeJSON((*scratch)[:0], line[v.start:v.end])
		*scratch = b
		return b, ok
	case 'l':
		return nil, true
	case '[':
		buf := (*scratch)[:0]
		i := skipWS(line, v.start+1)
		if i < v.end && line[i] == '"' {
			e, _, ok := scanValue(line, i)
			if !ok {
				return nil, false
			}
			return e.bytes(line, scratch)
		}
		for i < v.end && line[i] != ']' {
			n := 0
			j := i
			for j < v.end && isDigit(line[j]) && j-i < 4 {
				n = n*10 + int(line[j]-'0')
				j++
			}
			if j == i || n > 255 {
				return nil, false
			}
			buf = append(buf, byte(n))
			i = skipWS(line, j)
			if i < v.end && line[i] == ',' {
				i = skipWS(line, i+1)
			}
		}
		*scratch = buf
		return buf, true
	}
	return nil, true
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// scanString scans a JSON string starting at b[i] == '"'. It returns the
// content span, whether it holds escapes, and the index after the quote.
func scanString(b []byte, i int) (start, end int, esc bool, next int, ok bool) {
	j := i + 1
	for j < len(b) {
		switch b[j] {
		case '"':
			return i + 1, j, esc, j + 1, true
		case '\\':
			esc = true
			j += 2
			continue
		}
		j++
	}
	return 0, 0, false, 0, false
}

// scanValue scans any JSON value at b[i].
func scanValue(b []byte, i int) (jsonValue, int, bool) {
	if i >= len(b) {
		return jsonValue{}, 0, false
	}
	switch c := b[i]; c {
	case '"':
		s, e, esc, n, ok := scanString(b, i)
		return jsonValue{kind: '"', start: s, end: e, esc: esc}, n, ok
	case '[', '{':
		depth := 0
		j := i
		for j < len(b) {
			switch b[j] {
			case '"':
				_, _, _, n, ok := scanString(b, j)
				if !ok {
					return jsonValue{}, 0, false
				}
				j = n
				continue
			case '[', '{':
				depth++
			case ']', '}':
				depth--
				if depth == 0 {
					return jsonValue{kind: c, start: i, end: j}, j + 1, true
				}
			}
			j++
		}
		return jsonValue{}, 0, false
	default:
		j := i
		for j < len(b) && (b[j] >= 'a' && b[j] <= 'z' || isDigit(b[j]) || b[j] == '-' || b[j] == '+' || b[j] == '.' || b[j] == 'E') {
			j++
		}
		if j == i {
			return jsonValue{}, 0, false
		}
		return jsonValue{kind: 'l', start: i, end: j}, j, true
	}
}

// unescapeJSON appends the decoded content of a JSON string to dst.
func unescapeJSON(dst, s []byte) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		i++
		if i >= len(s) {
			return dst, false
		}
		switch s[i] {
		case '"', '\\', '/':
			dst = append(dst, s[i])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, ok := hex4(s[i+1:])
			if !ok {
				return dst, false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					if r2, ok := hex4(s[i+3:]); ok {
						if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
							r = d
							i += 6
						}
					}
				}
			}
			dst = utf8.AppendRune(dst, r)
		default:
			return dst, false
		}
	}
	return dst, true
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case isDigit(c):
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
