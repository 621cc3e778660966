package store

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/mailtls/mailtls/delivery"
)

// The detail column holds the fields of a delivery that no query filters or
// groups on, as one JSON array:
//
//	["queue_id", "recipient", "orig_to", "dsn", "reason", "process", pid, "host"]
//
// (host is the host field of the log line, delivery.Delivery.LogHost, not the
// fleet host, host_id: see hosts.go), followed, when the delivery line
// had Postfix 3.11's tls= field (schema version 4 on), by a ninth element,
// "tls_feature", and, when the session had a certificate verification
// failure or Postfix >= 3.10 logged a TLSRPT status for it, by
// "tls_verify" and "tlsrpt" (the ninth then present, "" without a tls=
// field). The column is JSON text, so these needed no migration; a binary
// older than them cannot read such rows.
//
// Binding one value per row instead of eight is a fifth of a bulk import's
// time. The array stays readable from the sqlite3 shell (json_extract, and
// the delivery_log view). Strings keep their bytes exactly: '"', '\' and
// control bytes are escaped, everything else is written as it is, and
// decodeDetail gives back what appendDetail was given. (By then the strings
// are valid UTF-8 without NUL, see safeText; rows of an older mailtls may
// hold invalid UTF-8, which reads back as it was written.)

// detailFields is the number of elements of a detail array, the optional
// tls_feature, tls_verify and tlsrpt included; minDetailFields without
// them.
const (
	detailFields    = 11
	minDetailFields = 8
)

// appendDetail appends the detail array of d to dst.
func appendDetail(dst []byte, d *delivery.Delivery) []byte {
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
	dst = appendJSONString(dst, d.LogHost)
	if d.TLSFeature != "" || d.TLSVerify != "" || d.TLSRPT != "" {
		dst = append(dst, ',')
		dst = appendJSONString(dst, d.TLSFeature)
	}
	if d.TLSVerify != "" || d.TLSRPT != "" {
		dst = append(dst, ',')
		dst = appendJSONString(dst, d.TLSVerify)
		dst = append(dst, ',')
		dst = appendJSONString(dst, d.TLSRPT)
	}
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

// errOtherJSON: valid JSON, maybe, but not as appendDetail writes it.
var errOtherJSON = errors.New("not written by appendDetail")

// decodeDetail fills the detail fields of d from a detail array. It reads
// what appendDetail writes itself; any other JSON array of five strings,
// an integer and a string (as the sqlite3 shell might write one) it leaves
// to encoding/json.
func decodeDetail(s string, d *delivery.Delivery) error {
	var strs [detailFields]string
	var pid int64
	err := scanDetail(s, &strs, &pid)
	if errors.Is(err, errOtherJSON) {
		err = decodeDetailJSON(s, &strs, &pid)
	}
	if err != nil {
		return err
	}
	d.QueueID, d.Recipient, d.OrigTo, d.DSN, d.Reason, d.Process, d.LogHost, d.TLSFeature = strs[0], strs[1], strs[2], strs[3], strs[4], strs[5], strs[7], strs[8]
	d.TLSVerify, d.TLSRPT = strs[9], strs[10]
	d.PID = int(pid)
	return nil
}

func decodeDetailJSON(s string, strs *[detailFields]string, pid *int64) error {
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil || len(raw) < minDetailFields || len(raw) > detailFields {
		return errDetail
	}
	for i, r := range raw {
		var err error
		if i == 6 {
			err = json.Unmarshal(r, pid)
		} else {
			err = json.Unmarshal(r, &strs[i])
		}
		if err != nil || r[0] == 'n' { // null is not a value here
			return errDetail
		}
	}
	if *pid < -1<<31 || *pid > 1<<31-1 {
		return errDetail
	}
	return nil
}

// scanDetail reads a detail array as appendDetail writes it.
func scanDetail(s string, strs *[detailFields]string, pid *int64) error {
	p := jsonScanner{s: s}
	if !p.byte('[') {
		return errOtherJSON
	}
	for i := range detailFields {
		if i >= minDetailFields && p.i < len(s) && s[p.i] == ']' {
			break // no tls_feature, tls_verify, tlsrpt
		}
		if i > 0 && !p.byte(',') {
			return errOtherJSON
		}
		var err error
		if i == 6 {
			*pid, err = p.integer()
		} else {
			strs[i], err = p.str()
		}
		if err != nil {
			return err
		}
	}
	if !p.byte(']') || p.i != len(s) {
		return errOtherJSON
	}
	return nil
}

type jsonScanner struct {
	s string
	i int
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
	n, err := strconv.ParseInt(p.s[p.i:j], 10, 32)
	if err != nil {
		return 0, errOtherJSON
	}
	p.i = j
	return n, nil
}

// str reads a JSON string with the escapes appendJSONString writes. Other
// bytes are taken as they are, so invalid UTF-8 comes back unchanged.
func (p *jsonScanner) str() (string, error) {
	if !p.byte('"') {
		return "", errOtherJSON
	}
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != '"' && p.s[p.i] != '\\' && p.s[p.i] >= 0x20 {
		p.i++
	}
	if p.i < len(p.s) && p.s[p.i] == '"' { // no escapes: no copy
		p.i++
		return p.s[start : p.i-1], nil
	}
	buf := []byte(p.s[start:p.i])
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '"' {
			p.i++
			return string(buf), nil
		}
		p.i++
		if c < 0x20 {
			return "", errOtherJSON // appendJSONString escapes them
		}
		if c != '\\' {
			buf = append(buf, c)
			continue
		}
		if p.i >= len(p.s) {
			return "", errDetail
		}
		e := p.s[p.i]
		p.i++
		switch {
		case e == '"' || e == '\\':
			buf = append(buf, e)
		case e == 'n':
			buf = append(buf, '\n')
		case e == 't':
			buf = append(buf, '\t')
		case e == 'u' && p.i+4 <= len(p.s) && p.s[p.i:p.i+2] == "00" && (p.s[p.i+2] == '0' || p.s[p.i+2] == '1') && isLowerHex(p.s[p.i+3]):
			// A control byte: U+0000 to U+001F, one byte in UTF-8.
			n, _ := strconv.ParseUint(p.s[p.i+2:p.i+4], 16, 8)
			buf = append(buf, byte(n))
			p.i += 4
		default:
			return "", errOtherJSON
		}
	}
	return "", errDetail
}

func isLowerHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }
