package store

import (
	"errors"
	"strconv"
	"unicode/utf8"
)

// The detail column holds the fields of a delivery that no query filters or
// groups on, as one JSON array:
//
//	["queue_id", "recipient", "orig_to", "dsn", "reason", "process", pid, "host"]
//
// Binding one value per row instead of eight is a fifth of a bulk import's
// time. The array stays readable from the sqlite3 shell (json_extract, and
// the delivery_log view). Strings keep their bytes exactly: '"', '\' and
// control bytes are escaped, everything else, invalid UTF-8 included, is
// written as it is, and decodeDetail gives back what appendDetail was given.

// detailFields is the number of elements of a detail array.
const detailFields = 8

// appendDetail appends the detail array of d to dst.
func appendDetail(dst []byte, d *Delivery) []byte {
	dst = append(dst, '[')
	for i, s := range [...]string{d.QueueID, d.Recipient, d.OrigTo, d.DSN, d.Reason, d.Process} {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, s)
	}
	dst = append(dst, ',')
	dst = strconv.AppendInt(dst, int64(d.PID), 10)
	dst = append(dst, ',')
	dst = appendJSONString(dst, d.Host)
	return append(dst, ']')
}

const hexDigits = "0123456789abcdef"

func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

var errDetail = errors.New("not a detail array")

// decodeDetail fills the detail fields of d from a detail array. It
// accepts any JSON array of five strings, an integer and a string (as the
// sqlite3 shell might write one), not only what appendDetail writes.
func decodeDetail(s string, d *Delivery) error {
	p := jsonScanner{s: s}
	p.space()
	if !p.byte('[') {
		return errDetail
	}
	var strs [detailFields]string
	var pid int64
	for i := range detailFields {
		if i > 0 && !p.byte(',') {
			return errDetail
		}
		p.space()
		var err error
		if i == 6 {
			pid, err = p.integer()
		} else {
			strs[i], err = p.str()
		}
		if err != nil {
			return err
		}
		p.space()
	}
	if !p.byte(']') {
		return errDetail
	}
	p.space()
	if p.i != len(s) {
		return errDetail
	}
	d.QueueID, d.Recipient, d.OrigTo, d.DSN, d.Reason, d.Process, d.Host = strs[0], strs[1], strs[2], strs[3], strs[4], strs[5], strs[7]
	d.PID = int(pid)
	return nil
}

type jsonScanner struct {
	s string
	i int
}

func (p *jsonScanner) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *jsonScanner) byte(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *jsonScanner) integer() (int64, error) {
	j := p.i
	if j < len(p.s) && p.s[j] == '-' {
		j++
	}
	for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
		j++
	}
	n, err := strconv.ParseInt(p.s[p.i:j], 10, 64)
	if err != nil || n < -1<<31 || n > 1<<31-1 {
		return 0, errDetail
	}
	p.i = j
	return n, nil
}

// str reads a JSON string. Bytes other than '"', '\' and control bytes are
// taken as they are, so invalid UTF-8 written by appendJSONString comes
// back unchanged.
func (p *jsonScanner) str() (string, error) {
	if !p.byte('"') {
		return "", errDetail
	}
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != '"' && p.s[p.i] != '\\' {
		if p.s[p.i] < 0x20 {
			return "", errDetail
		}
		p.i++
	}
	if p.i < len(p.s) && p.s[p.i] == '"' { // no escapes: no copy
		out := p.s[start:p.i]
		p.i++
		return out, nil
	}
	buf := []byte(p.s[start:p.i])
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return string(buf), nil
		case c < 0x20:
			return "", errDetail
		case c != '\\':
			buf = append(buf, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.s) {
			return "", errDetail
		}
		e := p.s[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", errDetail
			}
			if utf16IsHigh(r) && p.i+1 < len(p.s) && p.s[p.i] == '\\' && p.s[p.i+1] == 'u' {
				save := p.i
				p.i += 2
				if r2, ok := p.hex4(); ok && utf16IsLow(r2) {
					r = (r-0xd800)<<10 + (r2 - 0xdc00) + 0x10000
				} else {
					p.i = save
				}
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", errDetail
		}
	}
	return "", errDetail
}

func (p *jsonScanner) hex4() (rune, bool) {
	if p.i+4 > len(p.s) {
		return 0, false
	}
	n, err := strconv.ParseUint(p.s[p.i:p.i+4], 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(n), true
}

func utf16IsHigh(r rune) bool { return r >= 0xd800 && r < 0xdc00 }
func utf16IsLow(r rune) bool  { return r >= 0xdc00 && r < 0xe000 }
