package logparse

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/internal/clip"
	"github.com/mailtls/mailtls/policyd"
)

// Messages of the Postfix smtp(8)/lmtp(8) client that matter for TLS
// correlation. All parsers work on the message part of a line (after
// "tag[pid]: ") and return slices of it; they never allocate.

// isClientTag reports whether a syslog tag names an outbound SMTP or LMTP
// client: any "<prefix>/smtp" or "<prefix>/lmtp", whatever the
// syslog_name prefix ("postfix", "postfix-out", "postfix/relay", ...).
// tlsproxy, local, virtual, pipe, smtpd and the rest are not.
// The tag is at most maxTagLen bytes of printable ASCII, as a
// syslog_name is: it becomes a key of the correlator state.
func isClientTag(tag []byte) bool {
	n := len(tag)
	if n < 6 || tag[n-5] != '/' || string(tag[n-4:]) != "smtp" && string(tag[n-4:]) != "lmtp" {
		return false
	}
	return stateSafe(tag, maxTagLen) // last: it reads the whole tag
}

// isErrorTag reports whether a syslog tag names error(8), which runs as
// the "error" and "retry" services of master.cf ("postfix/error",
// "postfix/retry", "postfix-out/error"): its records defer or bounce the
// messages to a suspended destination or an error: transport without
// connecting.
func isErrorTag(tag []byte) bool {
	i := bytes.LastIndexByte(tag, '/')
	return i > 0 && (string(tag[i+1:]) == "error" || string(tag[i+1:]) == "retry") && stateSafe(tag, maxTagLen)
}

// Caps on what the correlator keeps in its state (and so in every
// checkpoint), per field. A relay is "host[addr]:port": a host name of at
// most 255 bytes (RFC 1035) and at most 64 for the rest. Longer fields are
// not from Postfix, and a line holding one is not read as a TLS summary,
// handshake failure or delivery record.
const (
	maxRelayLen  = 255 + 64
	maxProtoLen  = 128
	maxCipherLen = 128
	maxTagLen    = 64
)

// stateSafe reports whether b may be kept in the correlator state: at most
// max bytes, each printable ASCII that JSON writes as it is (no space, '"',
// '\\', '<', '>' or '&'), so that the state's size is the sum of its
// fields' lengths (see Correlator).
func stateSafe[T string | []byte](b T, max int) bool {
	if len(b) > max {
		return false
	}
	for i := 0; i < len(b); i++ {
		if c := b[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// tlsLine is a client TLS summary line (smtp_tls_loglevel >= 1):
//
//	Untrusted TLS connection established to mx.example.com[192.0.2.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256
//	Verified TLS connection reused to mx.example.com[192.0.2.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
type tlsLine struct {
	trust  delivery.Trust
	reused bool
	relay  []byte // "host[addr]:port" as logged
	proto  []byte
	cipher []byte
}

var trustPrefixes = [...]struct {
	prefix string
	trust  delivery.Trust
}{
	{"Untrusted TLS connection ", delivery.Untrusted},
	{"Verified TLS connection ", delivery.Verified},
	{"Trusted TLS connection ", delivery.Trusted},
	{"Anonymous TLS connection ", delivery.Anonymous},
}

// parseTLSLine parses a TLS summary line of an outbound connection
// ("... to ..."; the server's "... from ..." lines are not accepted).
func parseTLSLine(msg []byte) (tlsLine, bool) {
	var t tlsLine
	if len(msg) < 40 || msg[0] < 'A' || msg[0] > 'V' {
		return t, false
	}
	rest := msg
	for _, p := range trustPrefixes {
		if bytes.HasPrefix(msg, []byte(p.prefix)) {
			t.trust = p.trust
			rest = msg[len(p.prefix):]
			break
		}
	}
	if t.trust == "" {
		return t, false
	}
	switch {
	case bytes.HasPrefix(rest, []byte("established to ")):
		rest = rest[len("established to "):]
	case bytes.HasPrefix(rest, []byte("reused to ")):
		t.reused = true
		rest = rest[len("reused to "):]
	default:
		return t, false
	}
	relay, rest, ok := cutRelay(rest)
	if !ok {
		return t, false
	}
	t.relay = relay
	proto, cipher, found := bytes.Cut(rest, []byte(" with cipher "))
	if !found || len(proto) == 0 || !stateSafe(proto, maxProtoLen) {
		return t, false
	}
	t.proto = proto
	if i := bytes.Index(cipher, []byte(" (")); i >= 0 {
		cipher = cipher[:i]
	} else if i := bytes.IndexByte(cipher, ' '); i >= 0 {
		cipher = cipher[:i]
	}
	if len(cipher) == 0 || !stateSafe(cipher, maxCipherLen) {
		return t, false
	}
	t.cipher = cipher
	return t, true
}

// cutRelay splits "host[addr]:port: rest" into the relay and rest. The
// address may be IPv6 ("mx[2001:db8::1]:25"), so the relay ends at the
// first ": " after the closing bracket. The relay must be stateSafe.
func cutRelay(b []byte) (relay, rest []byte, ok bool) {
	relay, rest, ok = cutRelayAny(b)
	if ok && !stateSafe(relay, maxRelayLen) {
		return nil, nil, false
	}
	return relay, rest, ok
}

func cutRelayAny(b []byte) (relay, rest []byte, ok bool) {
	from := 0
	if lb := bytes.IndexByte(b, '['); lb >= 0 {
		if sp := bytes.IndexByte(b[:lb], ' '); sp >= 0 {
			return nil, nil, false
		}
		rb := bytes.IndexByte(b[lb:], ']')
		if rb < 0 {
			return nil, nil, false
		}
		from = lb + rb
	}
	i := bytes.Index(b[from:], []byte(": "))
	if i < 0 {
		// "SSL_connect error to host[addr]:25:" may end the line.
		if n := len(b); n > from && b[n-1] == ':' {
			return b[:n-1], nil, n > 1
		}
		return nil, nil, false
	}
	relay = b[:from+i]
	if len(relay) == 0 || bytes.IndexByte(relay, ' ') >= 0 {
		return nil, nil, false
	}
	return relay, b[from+i+2:], true
}

// parseRelayPrefix matches "<prefix>host[addr]:port: ..." and returns the
// relay: used for "SSL_connect error to ", "connect to " and certificate
// verification failures.
func parseRelayPrefix(msg []byte, prefix string) ([]byte, bool) {
	if !bytes.HasPrefix(msg, []byte(prefix)) {
		return nil, false
	}
	relay, _, ok := cutRelay(msg[len(prefix):])
	return relay, ok
}

// Handshake and connection failures logged without a queue id:
//
//	SSL_connect error to mx.example.com[192.0.2.1]:25: -1
//	connect to mx.example.com[192.0.2.1]:25: Connection refused
//	server certificate verification failed for mx.example.com[192.0.2.1]:25: num=62:hostname mismatch
func parseHandshakeError(msg []byte) ([]byte, bool) {
	return parseRelayPrefix(msg, "SSL_connect error to ")
}

func parseConnectError(msg []byte) ([]byte, bool) {
	return parseRelayPrefix(msg, "connect to ")
}

// verifyPrefixes start the lines of tls_log_verify_error() (tls_verify.c,
// the same texts in Postfix 3.7 to 3.12): "%s certificate verification
// failed for %s: ..." with PURPOSE "server" (the leaf) or "CA" (a CA
// certificate of the chain), and the forms without a purpose.
var verifyPrefixes = [...]string{
	"server certificate verification failed for ",
	"CA certificate verification failed for ",
	"certificate verification failed for ",
}

// parseVerifyFailure parses a certificate verification failure, which
// Postfix logs during the handshake, before the TLS summary line, whenever
// the level requires a matching certificate (verify, secure, dane), and
// with smtp_tls_loglevel >= 1 otherwise:
//
//	server certificate verification failed for verify.test[127.0.1.2]:25: num=62:hostname mismatch
//	server certificate verification failed for expired.test[127.0.1.6]:25: certificate has expired
//	certificate verification failed for untrusted.test[127.0.1.7]:25: untrusted issuer /CN=mailtls e2e untrusted CA
//
// It returns the relay and the text after it (why verification failed).
func parseVerifyFailure(msg []byte) (relay, why []byte, ok bool) {
	if len(msg) == 0 || msg[0] != 's' && msg[0] != 'C' && msg[0] != 'c' {
		return nil, nil, false
	}
	for _, p := range verifyPrefixes {
		if bytes.HasPrefix(msg, []byte(p)) {
			relay, why, ok = cutRelay(msg[len(p):])
			if !ok || len(why) == 0 {
				return nil, nil, false
			}
			return relay, why, true
		}
	}
	return nil, nil, false
}

// tlsaUnusable is the text of Postfix's warning (tls_dane.c, Postfix 3.7
// to 3.12) that no TLSA record of a DANE destination's MX host is usable,
// logged during the handshake before the verification failure:
//
//	warning: mx.example.com[192.0.2.1]:25: unusable TLSA RR: 3 1 7 2FDD...
//	warning: mx.example.com[192.0.2.1]:25: all TLSA records unusable
const tlsaUnusable = "all TLSA records unusable"

// parseTLSAUnusable parses the "all TLSA records unusable" warning and
// returns its relay.
func parseTLSAUnusable(msg []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(msg, []byte("warning: "))
	if !ok || !bytes.HasSuffix(rest, []byte(": "+tlsaUnusable)) {
		return nil, false
	}
	relay, why, ok := cutRelay(rest)
	if !ok || string(why) != tlsaUnusable {
		return nil, false
	}
	return relay, true
}

// maxVerifyLen and maxTLSRPTLen cap the texts of a verification failure
// and of a TLSRPT status line kept in the correlator state. A TLSRPT line
// holds a domain and an MX host name (255 bytes each), an address, a
// failure type and a short reason.
const (
	maxVerifyLen = 200
	maxTLSRPTLen = 700
)

// stateText returns b as a string that may be kept in the correlator
// state with spaces: at most max bytes, and every byte that stateSafe
// refuses, other than a space, replaced by '?' (Postfix itself prints
// certificate names with printable(), '?' for what is not printable).
func stateText(b []byte, max int) string {
	if len(b) > max {
		b = b[:max]
	}
	out := []byte(nil)
	for i, c := range b {
		if c != ' ' && !stateSafe(b[i:i+1], 1) {
			if out == nil {
				out = bytes.Clone(b)
			}
			out[i] = '?'
		}
	}
	if out != nil {
		return string(out)
	}
	return string(b)
}

// TLSRPTStatus is a status line that Postfix 3.10 and later write when
// built with libtlsrpt and smtp_tlsrpt_enable = yes (tlsrpt_wrapper.c,
// trw_report_success and trw_report_failure; TLSRPT_README, "TLSRPT Status
// logging"), one per TLS handshake on a new connection, from the smtp(8)
// process (or tlsproxy(8)), without a queue id:
//
//	TLSRPT: status=success, domain=example.com, receiving_mx=mail.example.com[192.0.2.1]
//	TLSRPT: status=failure, domain=example.org, receiving_mx=mail.example.org[192.0.2.2], failure_type=starttls_not_supported
//	TLSRPT: status=failure, domain=example.net, receiving_mx=mail.example.net[192.0.2.3], failure_type=validation_failure, failure_reason=self-signed_certificate
//
// delivery.Delivery.TLSRPT keeps the text after "TLSRPT: "; ParseTLSRPTStatus reads
// it.
type TLSRPTStatus struct {
	Success bool
	Domain  string // the TLSRPT policy domain
	MX      string // receiving_mx as logged: "host[addr]"
	// FailureType is failure_type in RFC 8460 spelling: Postfix logs
	// "certificate_host_mismatch" for the result type
	// "certificate-host-mismatch". "" on success.
	FailureType   string
	FailureReason string // failure_reason (OpenSSL's error, spaces as '_'), or ""
}

// tlsrptPrefix starts a TLSRPT status line.
const tlsrptPrefix = "TLSRPT: "

// ParseTLSRPTStatus parses the text of a TLSRPT status line after
// "TLSRPT: ". The fields are those of Postfix 3.10.0 to 3.12, in their
// order; a line in any other form is an error, and mailtls then keeps its
// own reading of the session.
func ParseTLSRPTStatus(s string) (TLSRPTStatus, error) {
	var st TLSRPTStatus
	orig := s
	bad := func(why string) (TLSRPTStatus, error) {
		return TLSRPTStatus{}, fmt.Errorf("logparse: TLSRPT status %q: %s (want \"status=success|failure, domain=D, receiving_mx=HOST[ADDR][, failure_type=T[, failure_reason=R]]\")", clip.Text(orig, 80), why)
	}
	if len(s) > maxTLSRPTLen {
		return bad("too long")
	}
	field := func(name string) (string, bool) {
		rest, ok := strings.CutPrefix(s, name+"=")
		if !ok {
			return "", false
		}
		v, after, found := strings.Cut(rest, ", ")
		if found {
			s = after
		} else {
			s = ""
		}
		return v, true
	}
	status, ok := field("status")
	switch {
	case !ok:
		return bad("no status")
	case status == "success":
		st.Success = true
	case status == "failure":
	default:
		return bad("status " + status)
	}
	if st.Domain, ok = field("domain"); !ok || st.Domain == "" || !stateSafe(st.Domain, 255) {
		return bad("no domain")
	}
	if st.MX, ok = field("receiving_mx"); !ok || !stateSafe(st.MX, maxRelayLen) {
		return bad("no receiving_mx")
	}
	if lb := strings.IndexByte(st.MX, '['); lb <= 0 || !strings.HasSuffix(st.MX, "]") || lb == len(st.MX)-2 {
		return bad("receiving_mx is not HOST[ADDR]")
	}
	if st.Success {
		if s != "" {
			return bad("text after a success")
		}
		return st, nil
	}
	ft, ok := field("failure_type")
	if !ok || ft == "" {
		return bad("a failure without failure_type")
	}
	rt := []byte(ft)
	for i, c := range rt {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c >= 'A' && c <= 'Z':
			rt[i] = c + 'a' - 'A'
		case c == '_':
			rt[i] = '-'
		default:
			return bad("failure_type " + ft)
		}
	}
	st.FailureType = string(rt)
	if s != "" {
		r, ok := strings.CutPrefix(s, "failure_reason=")
		if !ok || r == "" {
			return bad("text after failure_type")
		}
		st.FailureReason = r
	}
	return st, nil
}

// parseTLSRPTLine parses a TLSRPT status line: the text after the prefix,
// as kept (stateText), and its parsed form.
func parseTLSRPTLine(msg []byte) (string, TLSRPTStatus, bool) {
	if !bytes.HasPrefix(msg, []byte(tlsrptPrefix)) || len(msg)-len(tlsrptPrefix) > maxTLSRPTLen {
		return "", TLSRPTStatus{}, false
	}
	text := stateText(msg[len(tlsrptPrefix):], maxTLSRPTLen)
	st, err := ParseTLSRPTStatus(text)
	return text, st, err == nil
}

// relayMX returns "host[addr]" of a relay "host[addr]:port", lowercased,
// as a TLSRPT status line names the receiving MX; "" without brackets.
func relayMX(relay string) string {
	i := strings.LastIndexByte(relay, ']')
	if i <= 0 || strings.IndexByte(relay, '[') <= 0 {
		return ""
	}
	return lowerASCII(relay[:i+1])
}

// deliveryLine is a delivery status record (log_adhoc.c):
//
//	QID: to=<rcpt>[, orig_to=<addr>], relay=host[addr]:port|none[, conn_use=N], delay=D, delays=a/b/c/d[, tls=FEATURES], dsn=X.Y.Z, status=STATUS (reason)
//
// Fields are matched by name, so older or newer versions that add, drop or
// reorder fields still parse.
type deliveryLine struct {
	qid, rcpt, origTo, relay []byte
	rcptAt                   int // index of the domain's '@' in rcpt, or -1
	dsn, status, reason      []byte
	tls                      []byte // Postfix >= 3.11 "tls=" feature status, raw
}

// isQueueID accepts short hex ids ("3F2A81C0D2") and long ids
// ("4Xk9Pq2Lz1z9abc", enable_long_queue_ids): 6 to 20 letters and digits.
func isQueueID(b []byte) bool {
	if len(b) < 6 || len(b) > 20 {
		return false
	}
	for _, c := range b {
		if !(isDigit(c) || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// cutQueueID splits "QID: rest".
func cutQueueID(msg []byte) (qid, rest []byte, ok bool) {
	i := bytes.IndexByte(msg, ':')
	if i < 0 || i+1 >= len(msg) || msg[i+1] != ' ' || !isQueueID(msg[:i]) {
		return nil, nil, false
	}
	return msg[:i], msg[i+2:], true
}

// parseDelivery parses a delivery status record.
func parseDelivery(msg []byte) (deliveryLine, bool) {
	var d deliveryLine
	qid, rest, ok := cutQueueID(msg)
	if !ok || !bytes.HasPrefix(rest, []byte("to=<")) {
		return d, false
	}
	d.qid = qid
	rcpt, at, rest, ok := cutAddr(rest[len("to="):])
	if !ok {
		return d, false
	}
	d.rcpt, d.rcptAt = rcpt, at
	for len(rest) > 0 {
		if !bytes.HasPrefix(rest, []byte(", ")) {
			return d, false
		}
		rest = rest[2:]
		eq := bytes.IndexByte(rest, '=')
		if eq <= 0 {
			return d, false
		}
		name := rest[:eq]
		rest = rest[eq+1:]
		if string(name) == "status" {
			word := rest
			if sp := bytes.IndexByte(rest, ' '); sp >= 0 {
				word = rest[:sp]
				r := rest[sp+1:]
				if len(r) > 0 && r[0] == '(' {
					r = r[1:]
					if n := len(r); n > 0 && r[n-1] == ')' {
						r = r[:n-1]
					}
					d.reason = r
				}
			}
			d.status = word
			break
		}
		var val []byte
		if string(name) == "orig_to" && len(rest) > 0 && rest[0] == '<' {
			val, _, rest, ok = cutAddr(rest)
			if !ok {
				return d, false
			}
		} else {
			end := bytes.Index(rest, []byte(", "))
			if end < 0 {
				end = len(rest)
			}
			val, rest = rest[:end], rest[end:]
		}
		switch string(name) {
		case "orig_to":
			d.origTo = val
		case "relay":
			if len(val) > maxRelayLen {
				return d, false
			}
			d.relay = val
		case "dsn":
			d.dsn = val
		case "tls":
			d.tls = val
		}
	}
	if len(d.relay) == 0 || len(d.status) == 0 {
		return d, false
	}
	return d, true
}

// cutAddr splits "<addr>, name=..." or "<addr>" at the end of the line,
// reading the address as Postfix writes it (quote_822_local(), with
// info_log_address_format = external, the default since Postfix 3.5): a
// local part that is not a dot-atom is in double quotes, and inside quotes
// a backslash escapes the next byte ('"', '\\'). The address ends at the
// first '>' outside quotes, which must end the line or be followed by ", ":
// whatever a quoted local part holds (">", ", relay=...", "status=sent")
// stays in the address. at is the index in addr of the last '@' outside
// quotes (the one before the domain), or -1.
//
// With info_log_address_format = internal, Postfix logs local parts
// unquoted, and a record with a hostile address cannot be read without
// ambiguity; see SECURITY.md.
func cutAddr(b []byte) (addr []byte, at int, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '<' {
		return nil, -1, nil, false
	}
	// Most addresses have no quoted part: then the address ends at the
	// first '>', its domain after the last '@'.
	if end := bytes.IndexByte(b, '>'); end > 0 && bytes.IndexByte(b[1:end], '"') < 0 {
		return addrAt(b, end, bytes.LastIndexByte(b[1:end], '@'))
	}
	return cutQuotedAddr(b)
}

// addrAt is cutAddr's result for the address of b that ends at b[end]:
// what follows must end the line or start with ", ".
func addrAt(b []byte, end, at int) ([]byte, int, []byte, bool) {
	rest := b[end+1:]
	if len(rest) > 0 && !bytes.HasPrefix(rest, []byte(", ")) {
		return nil, -1, nil, false
	}
	return b[1:end], at, rest, true
}

// cutQuotedAddr is cutAddr, byte by byte: any address, quoted or not.
func cutQuotedAddr(b []byte) (addr []byte, at int, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '<' {
		return nil, -1, nil, false
	}
	at = -1
	quoted := false
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case quoted && c == '\\':
			i++ // the escaped byte, whatever it is
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '@':
			at = i - 1
		case c == '>':
			return addrAt(b, i, at)
		}
	}
	return nil, -1, nil, false
}

// parseHandshakeFailure matches the info line a client logs when it
// retries in plaintext after a failed handshake (seen with Postfix 3.7):
//
//	C79CE985DD3: Cannot start TLS: handshake failure
func parseHandshakeFailure(msg []byte) ([]byte, bool) {
	qid, rest, ok := cutQueueID(msg)
	if !ok || !bytes.HasPrefix(rest, reasonCannotStartTLS) {
		return nil, false
	}
	return qid, true
}

// tlsFeature is the TLS security level part of the Postfix 3.11 "tls="
// delivery status field (smtp_log_tls_feature_status = yes; log_adhoc.c,
// tls_stats.c). The field lists up to two features, the TLS level and
// REQUIRETLS, separated by "/" ("secure/requiretls"). Each is written
// [!][(][disabled:]LEVEL[:STATUS][)][?]. The forms read, and what mailtls
// takes each to mean:
//
//	LEVEL          the level in force, met: "dane", "verify", "encrypt", "may", "none"
//	LEVEL:LEVEL2   a downgrade: LEVEL was in force, LEVEL2 is what the session
//	               reached ("dane:may": no usable TLSA records; "may:none":
//	               opportunistic TLS given up, plaintext)
//	LEVEL:OTHER    a feature status that is not a level ("dane:halfdane"): the
//	               level in force is LEVEL, what was reached is not known
//	!LEVEL, LEVEL! the level was enforced and this record is its failure
//	LEVEL?         not decided (not enforced) when the record was written
//	(LEVEL...)     relaxed enforcement; read as without the parentheses
//
// What it decides (Correlator.onDelivery), over what the TLS summary lines
// and handshake failures suggest: a decided (no "?") record whose reached
// level is "none" went out in plaintext (a fallback only when a handshake
// failure for the same message and host came before it, as without tls=:
// "may:none" is also what a server that offers no STARTTLS gives); a
// decided "sent" without "!" whose reached level is mandatory (encrypt,
// dane, dane-only, fingerprint, verify, secure) was encrypted, and is no
// fallback. Any other form ("may", an unknown status, "?") leaves TLS to
// the correlator. A "!" on a record that is not "sent" makes it a TLS
// failure. The raw value is kept in delivery.Delivery.TLSFeature.
type tlsFeature struct {
	present   bool
	target    string // e.g. "dane"
	final     string // level reached; equals target without a downgrade, "" if not known
	violation bool
	undecided bool
}

// tlsLevels are the smtp_tls_security_level values (policyd's list), so
// that tlsLevel returns a string that the record does not hold on to.
var tlsLevels = policyd.Levels()

func tlsLevel(b []byte) (string, bool) {
	for _, l := range tlsLevels {
		if string(b) == l {
			return l, true
		}
	}
	return "", false
}

// parseTLSFeature parses the value of "tls=" and returns the TLS level
// feature (REQUIRETLS is ignored).
func parseTLSFeature(v []byte) tlsFeature {
	var f tlsFeature
	for len(v) > 0 {
		part := v
		if i := bytes.IndexByte(v, '/'); i >= 0 {
			part, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		var g tlsFeature
		if len(part) > 0 && part[0] == '!' {
			g.violation = true
			part = part[1:]
		}
		for len(part) > 0 {
			switch part[len(part)-1] {
			case '?':
				g.undecided = true
			case '!':
				g.violation = true
			case ')':
			default:
				goto trimmed
			}
			part = part[:len(part)-1]
		}
	trimmed:
		part = bytes.TrimPrefix(part, []byte("("))
		part = bytes.TrimPrefix(part, []byte("disabled:"))
		target, final, _ := bytes.Cut(part, []byte(":"))
		t, ok := tlsLevel(target)
		if !ok {
			continue
		}
		g.present, g.target, g.final = true, t, t
		if len(final) > 0 {
			g.final, _ = tlsLevel(final) // "" for a feature status
		}
		if !f.present {
			f = g
		}
	}
	return f
}

// mandatoryTLS reports whether a delivery that complied with this level
// must have been encrypted: a level that requires TLS, or dane reached as
// such (with usable TLSA records; without, Postfix logs "dane:may").
func mandatoryTLS(level string) bool {
	return level == "dane" || policyd.RequiresTLS(level)
}

// Reason texts. Postfix writes these into the parenthesised reason of a
// deferred or bounced record (smtp_proto.c, smtp_connect.c).
var (
	reasonCannotStartTLS = []byte("Cannot start TLS")     // handshake failure
	reasonTLSRequired    = []byte("TLS is required, but") // not offered / refused
	tlsReasonWords       = [...][]byte{[]byte("TLS"), []byte("SSL"), []byte("ertificate"), []byte("andshake")}
)

// reasonMentionsTLS reports whether a failure reason is about TLS.
func reasonMentionsTLS(reason []byte) bool {
	for _, w := range tlsReasonWords {
		if bytes.Contains(reason, w) {
			return true
		}
	}
	return false
}

// reasonNoTLS reports whether a failure reason says no TLS session was
// established.
func reasonNoTLS(reason []byte) bool {
	return bytes.Contains(reason, reasonCannotStartTLS) || bytes.Contains(reason, reasonTLSRequired)
}

// lowerASCII lowercases ASCII letters, allocating only when needed.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// TLSFeatureLevel returns the TLS security level that Postfix 3.11's tls=
// field (delivery.Delivery.TLSFeature) names as the one in force for the delivery,
// e.g. "secure" for "secure/requiretls" and "dane" for "dane:may", or ""
// when v names none.
func TLSFeatureLevel(v string) string { return parseTLSFeature([]byte(v)).target }
