package logparse

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mailtls/mailtls/delivery"
)

// ErrBadState is returned by UnmarshalState for data it did not write.
var ErrBadState = errors.New("logparse: invalid correlator state")

// Bounds on correlator memory. An smtp process lives for at most
// max_use deliveries or max_idle seconds, so only a few hundred process
// sessions are live at any time; the caps only matter for pathological
// input. When a map outgrows its cap, the least recently used half is
// dropped.
const (
	defaultMaxProcs  = 10000
	defaultMaxFailed = 100000
)

// Bounds on the state's size, so that a checkpoint stays under 1 MiB
// whatever the log holds (issue #14). Every string kept in the state is
// stateSafe and capped (maxRelayLen, ...), so an entry's JSON size is at
// most its cost: the lengths of its strings plus a fixed overhead for the
// field names and the use stamp. When the costs of a map's entries exceed
// its budget, the least recently used entries are dropped until at most
// half of it is used. Typical entries cost about 250 (sessions) and 80
// (failures) bytes: some 1,500 sessions and 7,000 failures fit.
const (
	procBudget   = 384 << 10
	failBudget   = 576 << 10
	procOverhead = 140 // {"key":"","open":true,"relay":"",... "used":N},
	failOverhead = 50  // {"qid":"","host":"","used":N},
)

// stateVersion is written into MarshalState output.
const stateVersion = 1

// Correlator parses Postfix log lines and joins TLS summary lines to the
// delivery records they belong to. It is not safe for concurrent use.
//
// Only lines of outbound clients (any "<prefix>/smtp[pid]" or
// "<prefix>/lmtp[pid]" tag) are correlated, per process (tag and pid);
// the delivery records of error(8) ("<prefix>/error[pid]") are deliveries
// too, with relay=none (see feedError):
//
//   - A TLS summary line ("... TLS connection established to R: ..." or
//     "... TLS connection reused to R: ...") opens a session to relay R.
//   - The first delivery record after it binds the session to its queue id.
//     Deliveries from the same process to relay R with that queue id (the
//     recipients of one message) went out over TLS, with the session's
//     trust level, protocol and cipher.
//   - A delivery with another queue id or relay, a "connect to ..." line or
//     an "SSL_connect error to ..." line ends the session.
//   - A delivery with relay=none made no connection: its TLS is nil.
//   - Any other delivery went out in plaintext, TLS=false, but only once a
//     TLS summary line has been seen by this correlator (the fact is kept
//     in the state). Before that, TLS logging may be off
//     (smtp_tls_loglevel = 0), so TLS is nil: unknown. A record whose
//     reason says that no TLS session was made ("Cannot start TLS", "TLS is
//     required, but ...") is TLS=false either way.
//   - After "SSL_connect error to R", a "QID: Cannot start TLS: handshake
//     failure" line or a deferral with that reason, a plaintext "sent"
//     record to the same relay host is a fallback (Fallback=true,
//     TLS=false): either the same process directly after the error, for the
//     same message, or any process later for the same queue id (a bounded
//     map queue id+relay host -> failed). Hosts are compared without the
//     address, so a retry to another address of the same MX host counts.
//   - With Postfix >= 3.11, a "tls=" field decides where it says so, over
//     the above: a compliant "sent" at a mandatory level (encrypt, dane,
//     verify, ...) was encrypted; a reached level "none" was not, and is a
//     fallback when another level was in force. See tlsFeature for the
//     forms read.
//   - TLSFailure is set on records that are not "sent" whose reason is
//     about TLS (TLS, SSL, certificate, handshake) or whose "tls=" field
//     reports a policy violation.
//   - A "certificate verification failed for R: WHY" line (logged during
//     the handshake, before the summary line) gives WHY to the deliveries
//     of the session that the next TLS summary line to R opens
//     (TLSVerify): the delivery record itself says only "Server
//     certificate not verified".
//     Under DANE, a "warning: R: all TLSA records unusable" line before
//     it (tls_dane.c) is the WHY instead: the verification failure that
//     follows it says only "num=1:unspecified certificate verification
//     error".
//   - Postfix >= 3.10's "TLSRPT: status=..." line names the connection's
//     MX (host[addr]); it goes, as logged, to the deliveries of the next
//     message to that MX from this process (TLSRPT), before or after the
//     TLS summary line. A summary line for another MX, or once the status
//     went to a message, a "connect to" line or a delivery to another
//     relay drops it.
//
// tlsproxy(8) copies of TLS summary lines are ignored, as are lines of every
// other program.
type Correlator struct {
	opts  Options
	loc   *time.Location
	stats Stats
	seq   uint64 // lines fed; orders map entries for eviction

	tlsSeen bool  // a client TLS summary line has been seen
	year    int   // year of the last traditional stamp (0 = not yet known)
	lastOrd int64 // ordinal of the latest traditional stamp in year

	procs  map[string]*procState
	failed map[failID]uint64 // -> last use

	maxProcs, maxFailed int

	// Costs (see procBudget) of the entries of procs and failed. The
	// entry the current line touched (touched, returned by proc) is
	// counted with its cost before the line, touchedCost, until settle.
	procBytes, failBytes int
	touched              *procState
	touchedCost          int

	// firstSkipped is the start of the first line counted as skipped
	// since the Correlator was made (not part of the state).
	firstSkipped     []byte
	haveSkipped      bool
	firstSkippedLong bool

	hdr      header
	scratch  []byte
	keyBuf   []byte
	strBuf   []byte               // fieldStrings' buffer
	interned map[string]string    // setInterned
	out      [1]delivery.Delivery // Feed's result
}

// failID is a message's handshake failure with a relay host.
type failID struct{ qid, host string }

// procState is what the correlator remembers about one client process.
// An entry without an open session, handshake failure, pending
// verification failure or TLSRPT status is deleted.
type procState struct {
	Open   bool           `json:"open,omitempty"`
	Relay  string         `json:"relay,omitempty"`
	Trust  delivery.Trust `json:"trust,omitempty"`
	Proto  string         `json:"proto,omitempty"`
	Cipher string         `json:"cipher,omitempty"`
	QID    string         `json:"qid,omitempty"` // bound by the first delivery of the session

	FailRelay string `json:"fail_relay,omitempty"` // last "SSL_connect error to"
	FailQID   string `json:"fail_qid,omitempty"`   // bound by the first delivery after it

	// A certificate verification failure (stateText), logged during the
	// handshake before the TLS summary line: pending until that line, then
	// the open session's (SessVerify).
	Verify      string `json:"verify,omitempty"`
	VerifyRelay string `json:"verify_relay,omitempty"`
	SessVerify  string `json:"sess_verify,omitempty"`

	// Postfix >= 3.10's TLSRPT status line (the text after "TLSRPT: ") for
	// the connection to RPTMX ("host[addr]", lowercased), logged before
	// or after the TLS summary line; bound to a queue id by the first
	// delivery to RPTMX after it.
	RPT    string `json:"rpt,omitempty"`
	RPTMX  string `json:"rpt_mx,omitempty"`
	RPTQID string `json:"rpt_qid,omitempty"`

	Used uint64 `json:"used"`

	key     string // its key in Correlator.procs
	counted int    // its cost as counted in Correlator.procBytes (settle)
}

func (p *procState) idle() bool { return !p.Open && p.FailRelay == "" && p.Verify == "" && p.RPT == "" }

// cost bounds the size of the entry in MarshalState's output. The fields
// of verification failures and TLSRPT lines, rarely set, add their JSON
// names (`,"verify_relay":""`) only when they are.
func (p *procState) cost() int {
	n := procOverhead + len(p.key) + len(p.Relay) + len(p.Trust) + len(p.Proto) + len(p.Cipher) +
		len(p.QID) + len(p.FailRelay) + len(p.FailQID)
	for _, f := range [...]struct {
		v    string
		name int
	}{{p.Verify, 12}, {p.VerifyRelay, 18}, {p.SessVerify, 17}, {p.RPT, 9}, {p.RPTMX, 12}, {p.RPTQID, 13}} {
		if f.v != "" {
			n += f.name + len(f.v)
		}
	}
	return n
}

func (f failID) cost() int { return failOverhead + len(f.qid) + len(f.host) }

// NewCorrelator returns a Correlator with empty state.
func NewCorrelator(opts Options) *Correlator {
	c := &Correlator{
		opts:      opts,
		loc:       opts.Location,
		procs:     make(map[string]*procState),
		failed:    make(map[failID]uint64),
		maxProcs:  defaultMaxProcs,
		maxFailed: defaultMaxFailed,
	}
	if c.loc == nil {
		c.loc = time.Local
	}
	return c
}

// Stats returns counters since creation; UnmarshalState restores them.
func (c *Correlator) Stats() Stats { return c.stats }

// Feed parses one raw line (without trailing newline) and returns the
// deliveries it completes: zero or one. Lines without a header the parser
// understands are counted in Stats.Skipped. Feed never panics on any input.
//
// The result is valid until the next call: callers copy it (append).
func (c *Correlator) Feed(line []byte) []delivery.Delivery {
	out := c.feed(line)
	c.settle()
	return out
}

func (c *Correlator) feed(line []byte) []delivery.Delivery {
	c.stats.Lines++
	c.seq++
	h := &c.hdr
	text := line
	if n := len(text); n > 0 && text[n-1] == '\r' {
		text = text[:n-1] // CRLF files
	}
	if !parseHeader(text, h, &c.scratch) {
		c.skip(line, false)
		return nil
	}
	if h.kind == stampTraditional {
		c.inferYear(h)
	}
	if len(h.msg) == 0 {
		return nil
	}
	if !isClientTag(h.tag) {
		if isErrorTag(h.tag) {
			return c.feedError(line, h)
		}
		return nil
	}
	msg := h.msg
	switch msg[0] {
	case 'A', 'U', 'T', 'V':
		if t, ok := parseTLSLine(msg); ok {
			c.onTLS(h, &t)
			return nil
		}
		if text, st, ok := parseTLSRPTLine(msg); ok {
			p := c.proc(h, true)
			p.RPT, p.RPTMX, p.RPTQID = text, lowerASCII(st.MX), ""
			return nil
		}
		if bytes.HasPrefix(msg, []byte(tlsrptPrefix)) {
			return nil // a TLSRPT line we cannot read: our own reading stands
		}
	case 'S':
		if r, ok := parseHandshakeError(msg); ok {
			p := c.proc(h, true)
			p.Open = false
			p.FailRelay = string(r)
			p.FailQID = ""
			p.Verify, p.VerifyRelay, p.SessVerify = "", "", ""
			return nil
		}
	case 'c':
		if _, ok := parseConnectError(msg); ok {
			if p := c.proc(h, false); p != nil {
				p.Open = false
				p.Verify, p.VerifyRelay, p.SessVerify = "", "", ""
				p.RPT, p.RPTMX, p.RPTQID = "", "", ""
				c.dropIfIdle(h, p)
			}
			return nil
		}
	}
	if relay, why, ok := parseVerifyFailure(msg); ok {
		p := c.proc(h, true)
		if p.Verify == tlsaUnusable && p.VerifyRelay == string(relay) {
			// OpenSSL's own reason follows (num=1:unspecified ...):
			// the warning named the cause.
			return nil
		}
		p.Verify, p.VerifyRelay = stateText(why, maxVerifyLen), string(relay)
		return nil
	}
	if relay, ok := parseTLSAUnusable(msg); ok {
		p := c.proc(h, true)
		p.Verify, p.VerifyRelay = tlsaUnusable, string(relay)
		return nil
	}
	d, ok := parseDelivery(msg)
	if !ok {
		if qid, ok := parseHandshakeFailure(msg); ok {
			if p := c.proc(h, false); p != nil && p.FailRelay != "" {
				p.FailQID = string(qid)
				c.failedPut(p.FailQID, delivery.RelayHost(p.FailRelay))
			}
		} else if bytes.Contains(msg, []byte(": to=<")) {
			// A delivery line we cannot read (truncated, mangled):
			// malformed, not silently ignored.
			c.skip(line, false)
		}
		return nil
	}
	status, ok := delivery.ParseStatus(d.status)
	if !ok {
		c.skip(line, false)
		return nil
	}
	c.out[0] = c.onDelivery(line, h, &d, status)
	c.stats.Deliveries++
	return c.out[:]
}

// SkipLine counts a line that was too long to read (see LineReader) as
// read and skipped; head is its start, for FirstSkipped.
func (c *Correlator) SkipLine(head []byte) {
	c.stats.Lines++
	c.seq++
	c.skip(head, true)
}

func (c *Correlator) skip(line []byte, tooLong bool) {
	c.stats.Skipped++
	if !c.haveSkipped {
		c.haveSkipped, c.firstSkippedLong = true, tooLong
		c.firstSkipped = bytes.Clone(line[:min(len(line), quoteMax+1)])
	}
}

// FirstSkipped describes the first line counted as skipped since the
// Correlator was made (QuoteLine of its start), so that a user sees why;
// ok is false when none was.
func (c *Correlator) FirstSkipped() (quoted string, ok bool) {
	if !c.haveSkipped {
		return "", false
	}
	q := QuoteLine(c.firstSkipped)
	if c.firstSkippedLong {
		q += " (longer than " + strconv.Itoa(MaxLineLen) + " bytes)"
	}
	return q, true
}

// feedError reads a line of error(8), which Postfix uses for the
// messages to a destination it has suspended after a failure ("delivery
// temporarily suspended: REASON OF THE FAILURE") and for error: transports.
// Its delivery records are deliveries with relay=none (TLS unknown): TLS
// failures when the reason names TLS.
func (c *Correlator) feedError(line []byte, h *header) []delivery.Delivery {
	d, ok := parseDelivery(h.msg)
	if !ok {
		if bytes.Contains(h.msg, []byte(": to=<")) {
			c.skip(line, false)
		}
		return nil
	}
	status, ok := delivery.ParseStatus(d.status)
	if !ok || string(d.relay) != "none" {
		c.skip(line, false) // error(8) makes no connection
		return nil
	}
	c.out[0] = c.onDelivery(line, h, &d, status)
	c.stats.Deliveries++
	return c.out[:]
}

func (c *Correlator) onTLS(h *header, t *tlsLine) {
	c.stats.TLSLines++
	c.tlsSeen = true
	p := c.proc(h, true)
	p.Open = true
	c.setInterned(&p.Relay, t.relay)
	c.setInterned(&p.Proto, t.proto)
	c.setInterned(&p.Cipher, t.cipher)
	p.Trust = t.trust
	p.QID = ""
	// The verification failure logged during this handshake, if any.
	p.SessVerify = ""
	if p.Verify != "" && p.VerifyRelay == p.Relay {
		p.SessVerify = p.Verify
	}
	p.Verify, p.VerifyRelay = "", ""
	// A TLSRPT line already bound to a delivery, or for another MX, is
	// not this connection's.
	if p.RPT != "" && (p.RPTQID != "" || p.RPTMX != relayMX(p.Relay)) {
		p.RPT, p.RPTMX, p.RPTQID = "", "", ""
	}
	if p.FailRelay != "" && delivery.RelayHost(p.FailRelay) == delivery.RelayHost(p.Relay) {
		// The retry with TLS succeeded.
		p.FailRelay, p.FailQID = "", ""
	}
}

func (c *Correlator) onDelivery(line []byte, h *header, d *deliveryLine, status delivery.Status) delivery.Delivery {
	p := c.proc(h, true)
	var f [deliveryFields]string
	c.fieldStrings(&f, line, d.relay, d.qid, d.rcpt, h.host, h.tag, d.origTo, d.dsn, d.reason, d.tls)
	relay, qid, rcpt := f[0], f[1], f[2]
	del := delivery.Delivery{
		Time:      h.time(c.loc),
		LogHost:   f[3],
		Process:   f[4],
		PID:       h.pid,
		QueueID:   qid,
		Recipient: rcpt,
		OrigTo:    f[5],
		Domain:    addrDomain(rcpt, d.rcpt, d.rcptAt),
		Relay:     relay,
		Status:    status,
		DSN:       f[6],
		Reason:    f[7],
		Key:       f[9],
	}
	var feat tlsFeature
	if len(d.tls) > 0 {
		feat = parseTLSFeature(d.tls)
	}

	// Handshake failures: this process, directly before, for this message.
	failed := false
	failHost := ""
	if p.FailRelay != "" {
		if (p.FailQID == "" || p.FailQID == qid) && (relay == "none" || delivery.RelayHost(p.FailRelay) == delivery.RelayHost(relay)) {
			setOwned(&p.FailQID, qid)
			failed = true
			failHost = delivery.RelayHost(p.FailRelay)
		} else {
			p.FailRelay, p.FailQID = "", ""
		}
	}
	if relay != "none" {
		failHost = delivery.RelayHost(relay)
		if c.failedHas(qid, failHost) {
			failed = true
		}
	}
	if failHost != "" && (failed || bytes.Contains(d.reason, reasonCannotStartTLS)) {
		c.failedPut(qid, failHost)
	}
	// Postfix >= 3.10: the connection's TLSRPT status, for the deliveries
	// of one message to its MX.
	if p.RPT != "" {
		if (p.RPTQID == "" || p.RPTQID == qid) && relay != "none" && p.RPTMX == relayMX(relay) {
			setOwned(&p.RPTQID, qid)
			del.TLSRPT = p.RPT
		} else if relay != "none" {
			p.RPT, p.RPTMX, p.RPTQID = "", "", ""
		}
	}

	yes, no := true, false
	switch {
	case relay == "none":
		// No connection was made: TLS does not apply.
		p.Open = false
		p.SessVerify = ""
	case p.Open && p.Relay == relay && (p.QID == "" || p.QID == qid):
		setOwned(&p.QID, qid)
		del.TLS = &yes
		del.TLSTrust, del.TLSProtocol, del.TLSCipher = p.Trust, p.Proto, p.Cipher
		del.TLSVerify = p.SessVerify
	default:
		p.Open = false
		p.SessVerify = ""
		switch {
		case failed && status == delivery.Sent:
			del.TLS = &no
			del.Fallback = true
		case reasonNoTLS(d.reason):
			del.TLS = &no
		case c.tlsSeen:
			del.TLS = &no
		}
	}
	// Postfix >= 3.11: the tls= field, where it says so, is the truth
	// (see tlsFeature).
	del.TLSFeature = f[8]
	if feat.present && !feat.undecided && relay != "none" {
		switch {
		case feat.final == "none":
			del.TLS = &no
			del.TLSTrust, del.TLSProtocol, del.TLSCipher, del.TLSVerify = "", "", "", ""
			// "may:none" is also what a server that offers no STARTTLS
			// gives: plaintext, but a fallback only after a failed handshake.
			del.Fallback = status == delivery.Sent && failed
		case status == delivery.Sent && !feat.violation && mandatoryTLS(feat.final):
			del.TLS = &yes
			del.Fallback = false
		}
	}
	if status != delivery.Sent && (feat.violation || reasonMentionsTLS(d.reason)) {
		del.TLSFailure = true
	}
	c.dropIfIdle(h, p)
	return del
}

// proc returns the state of the line's process, creating it if asked.
func (c *Correlator) proc(h *header, create bool) *procState {
	key := h.proc
	if h.kind == stampUnixMicro {
		c.keyBuf = append(c.keyBuf[:0], h.tag...)
		c.keyBuf = append(c.keyBuf, '[')
		c.keyBuf = strconv.AppendInt(c.keyBuf, int64(h.pid), 10)
		c.keyBuf = append(c.keyBuf, ']')
		key = c.keyBuf
	}
	if p, ok := c.procs[string(key)]; ok {
		p.Used = c.seq
		c.touched, c.touchedCost = p, p.counted
		return p
	}
	if !create {
		return nil
	}
	p := &procState{Used: c.seq, key: string(key)}
	c.procs[p.key] = p
	c.touched, c.touchedCost = p, 0
	if len(c.procs) > c.maxProcs {
		evict(c.procs, c.maxProcs, 0, func(p *procState) (uint64, int) { return p.Used, 0 })
		c.recountProcs()
	}
	return p
}

// settle adds the change in cost of the entry the line touched, and
// enforces procBudget.
func (c *Correlator) settle() {
	if c.touched == nil {
		return
	}
	n := c.touched.cost()
	c.procBytes += n - c.touchedCost
	c.touched.counted = n
	c.touched = nil
	if c.procBytes > procBudget {
		evict(c.procs, 0, procBudget/2, func(p *procState) (uint64, int) { return p.Used, p.cost() })
		c.recountProcs()
	}
}

// recountProcs sets procBytes from the entries, the touched one at its
// current cost.
func (c *Correlator) recountProcs() {
	c.procBytes = 0
	for _, p := range c.procs {
		p.counted = p.cost()
		c.procBytes += p.counted
	}
	if c.touched != nil {
		c.procBytes -= c.touched.cost() - c.touchedCost
		if _, ok := c.procs[c.touched.key]; !ok {
			c.touched = nil
		}
	}
}

func (c *Correlator) dropIfIdle(h *header, p *procState) {
	if !p.idle() {
		return
	}
	delete(c.procs, p.key)
	if c.touched == p {
		c.procBytes -= c.touchedCost
		c.touched = nil
	}
}

func (c *Correlator) failedHas(qid, host string) bool {
	k := failID{qid, host}
	if _, ok := c.failed[k]; ok {
		c.failed[k.owned()] = c.seq // a map assignment stores its key again
		return true
	}
	return false
}

// owned is k with strings of its own (see fieldStrings), as the keys of
// c.failed must be: the map keeps them after the line's delivery is gone.
func (k failID) owned() failID { return failID{strings.Clone(k.qid), strings.Clone(k.host)} }

func (c *Correlator) failedPut(qid, host string) {
	if !stateSafe(host, maxRelayLen) {
		return // not from Postfix; never kept (see stateSafe)
	}
	k := failID{qid, host}.owned()
	if _, ok := c.failed[k]; !ok {
		c.failBytes += k.cost()
	}
	c.failed[k] = c.seq
	if len(c.failed) > c.maxFailed || c.failBytes > failBudget {
		capacity, budget := 0, 0
		if len(c.failed) > c.maxFailed {
			capacity = c.maxFailed
		} else {
			budget = failBudget / 2
		}
		evict(c.failed, capacity, budget, func(u uint64) (uint64, int) { return u, 0 })
		c.failBytes = 0
		for k := range c.failed {
			c.failBytes += k.cost()
		}
	}
}

// evict keeps the capacity/2 most recently used entries of m or, when
// capacity is 0, the most recently used entries whose costs add up to at
// most budget. Use stamps are line numbers and each line touches at most
// one entry, so they are unique and the result does not depend on map
// order. used returns an entry's stamp and cost; a cost of 0 is replaced
// by the key's, for failID keys.
func evict[K comparable, V any](m map[K]V, capacity, budget int, used func(V) (uint64, int)) {
	type entry struct {
		stamp uint64
		cost  int
	}
	es := make([]entry, 0, len(m))
	for k, v := range m {
		stamp, cost := used(v)
		if cost == 0 {
			if f, ok := any(k).(failID); ok {
				cost = f.cost()
			}
		}
		es = append(es, entry{stamp, cost})
	}
	slices.SortFunc(es, func(a, b entry) int { return cmp.Compare(b.stamp, a.stamp) })
	keep := len(es)
	if capacity > 0 {
		keep = min(keep, capacity/2)
	} else {
		sum := 0
		for i, e := range es {
			if sum += e.cost; sum > budget {
				keep = i
				break
			}
		}
	}
	if keep == len(es) {
		return
	}
	cutoff := uint64(0)
	if keep > 0 {
		cutoff = es[keep-1].stamp
	} else {
		cutoff = es[0].stamp + 1
	}
	for k, v := range m {
		if stamp, _ := used(v); stamp < cutoff {
			delete(m, k)
		}
	}
}

// Year inference for traditional stamps, which have no year. The first
// stamp takes the year of Options.RefTime (the file's mtime, or now),
// unless that would put it more than a day after RefTime: then it is from
// the year before (a December line read in January). After that, lines
// are in time order: a stamp more than half a year before the latest one
// starts the next year; one more than half a year after it is a late
// line from the year before.
const halfYear = 183 * 86400

func stampOrdinal(h *header) int64 {
	return int64(((h.mon-1)*31+(h.day-1))*86400 + h.hour*3600 + h.min*60 + h.sec)
}

func (c *Correlator) inferYear(h *header) {
	ord := stampOrdinal(h)
	if c.year == 0 {
		ref := c.opts.RefTime
		if ref.IsZero() {
			ref = time.Now()
		}
		ref = ref.In(c.loc)
		y := ref.Year()
		cand := time.Date(y, time.Month(h.mon), h.day, h.hour, h.min, h.sec, 0, c.loc)
		if cand.Sub(ref) > 24*time.Hour {
			y--
		}
		c.year, c.lastOrd = y, ord
		h.year = y
		return
	}
	switch {
	case ord < c.lastOrd-halfYear:
		c.year++
		c.lastOrd = ord
	case ord > c.lastOrd+halfYear:
		h.year = c.year - 1
		return
	case ord > c.lastOrd:
		c.lastOrd = ord
	}
	h.year = c.year
}

// setInterned updates *dst to b, allocating only when it changed and b
// is not in c.interned: the relays, protocols and ciphers of TLS lines
// repeat, and a new process would take three strings for each handshake.
// The table holds up to maxInterned short strings; it starts again when
// full, so it follows the log.
func (c *Correlator) setInterned(dst *string, b []byte) {
	if *dst == string(b) {
		return
	}
	if s, ok := c.interned[string(b)]; ok {
		*dst = s
		return
	}
	s := toString(b)
	if len(s) <= maxInternedLen {
		if len(c.interned) >= maxInterned || c.interned == nil {
			c.interned = make(map[string]string, maxInterned)
		}
		c.interned[s] = s
	}
	*dst = s
}

const (
	maxInterned    = 1024
	maxInternedLen = 128
)

// deliveryFields is the number of strings onDelivery takes from a line.
const deliveryFields = 10

// fieldStrings sets f to fields converted as by toString, then the line's
// key (the hex SHA-256 of the raw line), all in one allocation: a delivery took ten before, a
// tenth of an import's garbage. The strings share their memory, so what
// outlives the delivery (the correlator's state) keeps its own copy
// (setOwned, failedPut), which its memory budget counts.
func (c *Correlator) fieldStrings(f *[deliveryFields]string, line []byte, fields ...[]byte) {
	buf := c.strBuf[:0]
	var ends [deliveryFields]int
	for i, b := range fields {
		if utf8.Valid(b) {
			buf = append(buf, b...)
		} else {
			buf = append(buf, bytes.ToValidUTF8(b, []byte("\uFFFD"))...)
		}
		ends[i] = len(buf)
	}
	sum := sha256.Sum256(line)
	buf = hex.AppendEncode(buf, sum[:])
	ends[len(fields)] = len(buf)
	all := string(buf)
	start := 0
	for i, end := range ends {
		f[i] = all[start:end]
		start = end
	}
	c.strBuf = buf
}

// setOwned sets *dst to a copy of s when it differs (see fieldStrings).
func setOwned(dst *string, s string) {
	if *dst != s {
		*dst = strings.Clone(s)
	}
}

// toString converts log bytes to a string, replacing invalid UTF-8.
func toString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// addrDomain returns the lowercased domain of an address: what follows
// the '@' at index at of raw (the last one outside quotes, see cutAddr),
// or "" when at is -1. s is toString(raw), sliced when it is raw unchanged.
func addrDomain(s string, raw []byte, at int) string {
	if at < 0 || at >= len(raw) {
		return ""
	}
	var d string
	if len(s) == len(raw) && utf8.Valid(raw) {
		d = s[at+1:]
	} else {
		d = toString(raw[at+1:])
	}
	for j := 0; j < len(d); j++ {
		if d[j] >= utf8.RuneSelf {
			return strings.ToLower(d)
		}
	}
	return lowerASCII(d)
}

// savedState is the MarshalState format.
type savedState struct {
	Version int         `json:"v"`
	Seq     uint64      `json:"seq"`
	Stats   Stats       `json:"stats"`
	TLSSeen bool        `json:"tls_seen,omitempty"`
	Year    int         `json:"year,omitempty"`
	LastOrd int64       `json:"last_ord,omitempty"`
	Procs   []savedProc `json:"procs,omitempty"`
	Failed  []savedFail `json:"failed,omitempty"`
}

type savedProc struct {
	Key string `json:"key"`
	procState
}

type savedFail struct {
	QID  string `json:"qid"`
	Host string `json:"host"`
	Used uint64 `json:"used"`
}

// MarshalState serialises everything that later lines depend on (open
// sessions, handshake failures, year inference, counters), so that a fresh
// Correlator given this state continues exactly as this one would.
func (c *Correlator) MarshalState() ([]byte, error) {
	s := savedState{
		Version: stateVersion,
		Seq:     c.seq,
		Stats:   c.stats,
		TLSSeen: c.tlsSeen,
		Year:    c.year,
		LastOrd: c.lastOrd,
	}
	for k, p := range c.procs {
		s.Procs = append(s.Procs, savedProc{Key: k, procState: *p})
	}
	slices.SortFunc(s.Procs, func(a, b savedProc) int { return strings.Compare(a.Key, b.Key) })
	for k, u := range c.failed {
		s.Failed = append(s.Failed, savedFail{QID: k.qid, Host: k.host, Used: u})
	}
	slices.SortFunc(s.Failed, func(a, b savedFail) int {
		return cmp.Or(strings.Compare(a.QID, b.QID), strings.Compare(a.Host, b.Host))
	})
	return json.Marshal(s)
}

// UnmarshalState replaces the correlator's state with one written by
// MarshalState. Empty input resets it to the state of a new Correlator.
func (c *Correlator) UnmarshalState(b []byte) error {
	var s savedState
	if len(b) > 0 {
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("%w: %v", ErrBadState, err)
		}
		if s.Version != stateVersion {
			return fmt.Errorf("%w: version %d, want %d", ErrBadState, s.Version, stateVersion)
		}
	}
	procs := make(map[string]*procState, len(s.Procs))
	c.procBytes, c.failBytes, c.touched = 0, 0, nil
	for _, sp := range s.Procs {
		p := sp.procState
		p.key = sp.Key
		p.counted = p.cost()
		procs[sp.Key] = &p
		c.procBytes += p.counted
	}
	failed := make(map[failID]uint64, len(s.Failed))
	for _, f := range s.Failed {
		k := failID{f.QID, f.Host}
		failed[k] = f.Used
		c.failBytes += k.cost()
	}
	c.seq, c.stats, c.tlsSeen, c.year, c.lastOrd = s.Seq, s.Stats, s.TLSSeen, s.Year, s.LastOrd
	c.procs, c.failed = procs, failed
	// A state written before the budgets existed may exceed them.
	if c.procBytes > procBudget {
		evict(c.procs, 0, procBudget/2, func(p *procState) (uint64, int) { return p.Used, p.cost() })
		c.recountProcs()
	}
	if c.failBytes > failBudget {
		evict(c.failed, 0, failBudget/2, func(u uint64) (uint64, int) { return u, 0 })
		c.failBytes = 0
		for k := range c.failed {
			c.failBytes += k.cost()
		}
	}
	return nil
}

// SetRefTime changes Options.RefTime. It matters only until the first
// traditional stamp has been read: after that the year follows from the
// order of the lines, across rotated files too.
func (c *Correlator) SetRefTime(t time.Time) {
	if c.year == 0 {
		c.opts.RefTime = t
	}
}
