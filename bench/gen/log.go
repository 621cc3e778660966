package gen

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// LogConfig configures Log.
type LogConfig struct {
	Seed     uint64        // the same seed gives the same log
	Start    time.Time     // first time stamp; zero means 2026-11-01T00:00:00Z
	Duration time.Duration // span of the time stamps; zero means 24h
	Lines    int           // approximate number of lines; zero means 10000
	Domains  int           // number of recipient domains; zero means 200
	Host     string        // syslog host name; "" means "mx1"
}

// Truth is the generator's own record of what it wrote, kept while writing
// and independent of the parser.
type Truth struct {
	Lines      int // lines written
	Deliveries []TruthDelivery
}

// TruthDelivery is one delivery record the generator wrote.
type TruthDelivery struct {
	Time        time.Time // UTC, as written (microseconds)
	QueueID     string
	Recipient   string
	Domain      string
	Relay       string
	Status      delivery.Status
	TLS         *bool // nil: no connection, or no TLS summary line written yet
	TLSTrust    delivery.Trust
	TLSProtocol string
	TLSCipher   string
	Fallback    bool // plaintext after this message's handshake to this relay failed
	TLSFailure  bool // deferred because of TLS
}

// Log writes a deterministic, realistic Postfix log with RFC 3339
// headers (as rsyslog writes them) to w and returns what it wrote. About
// three lines in four are noise (smtpd, cleanup, qmgr, pickup, tlsproxy,
// anvil, postscreen); the rest are smtp(8) client lines: TLS deliveries with
// various trust levels, protocols and ciphers, one to three recipients per
// message, plaintext deliveries, handshake failures followed by plaintext
// fallback on retry, "TLS is required" deferrals, certificate verification
// failures, unreachable destinations (relay=none), connection reuse through
// tlsproxy(8), and several smtp processes whose lines interleave.
func Log(w io.Writer, cfg LogConfig) (Truth, error) {
	g := newGen(w, cfg)
	g.run()
	if err := g.w.Flush(); err != nil && g.err == nil {
		g.err = err
	}
	return g.truth, g.err
}

// Destination behaviours.
type profile int

const (
	profVerified profile = iota
	profTrusted
	profUntrusted
	profAnonymous
	profPlain      // no STARTTLS
	profBroken     // handshake fails; plaintext on retry
	profRequired   // policy "encrypt", server offers no STARTTLS
	profVerifyFail // policy "verify", certificate name mismatch
	profDown       // connection refused: relay=none
)

var profileWeights = [...]struct {
	p profile
	w int
}{
	{profVerified, 20}, {profTrusted, 25}, {profUntrusted, 24}, {profAnonymous, 2},
	{profPlain, 12}, {profBroken, 5}, {profRequired, 4}, {profVerifyFail, 3}, {profDown, 5},
}

var trustNames = map[profile]delivery.Trust{
	profVerified: delivery.Verified, profTrusted: delivery.Trusted, profUntrusted: delivery.Untrusted,
	profAnonymous: delivery.Anonymous, profVerifyFail: delivery.Untrusted,
}

type suite struct{ proto, cipher, bits, extra string }

var suites = [...]suite{
	{"TLSv1.3", "TLS_AES_256_GCM_SHA384", "256/256", " key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256"},
	{"TLSv1.3", "TLS_AES_256_GCM_SHA384", "256/256", " key-exchange X25519 server-signature ECDSA (P-256) server-digest SHA256"},
	{"TLSv1.3", "TLS_AES_128_GCM_SHA256", "128/128", " key-exchange X25519 server-signature RSA-PSS (4096 bits) server-digest SHA256"},
	{"TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256", "256/256", " key-exchange X25519 server-signature ED25519 server-digest undefined"},
	{"TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", "256/256", ""},
	{"TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", "128/128", ""},
	{"TLSv1", "ECDHE-RSA-AES256-SHA", "256/256", ""},
}

var anonSuite = suite{"TLSv1.2", "ADH-AES256-GCM-SHA384", "256/256", ""}

var domainStems = [...]string{"acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell", "cyberdyne",
	"soylent", "gringotts", "oscorp", "vandelay", "dunder", "pied", "aperture", "blackmesa", "monarch", "krusty"}
var tlds = [...]string{"example", "example.com", "example.net", "example.org", "test"}
var users = [...]string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter"}

type domain struct {
	name  string
	relay string // host[addr]:25
	prof  profile
	suite suite
	reuse bool // smtp_tls_connection_reuse via tlsproxy
}

type proc struct {
	tag  string
	pid  int
	busy bool
	uses int
}

// genLine is one line still to be written by a script.
type genLine struct {
	tag   string
	pid   int
	msg   string
	kind  lineKind
	truth *TruthDelivery // for delivery lines
}

type lineKind int

const (
	kNoise   lineKind = iota
	kTLS              // client TLS summary line
	kTLSDel           // delivery inside a TLS session
	kPlain            // delivery without TLS: false once TLS lines were written, else unknown
	kNoTLS            // delivery that proves no TLS (handshake failure, TLS required)
	kNoConn           // relay=none
	kCleanup          // pseudo line: release the process, schedule retries
)

type script struct {
	p     *proc
	lines []genLine
	done  func()
}

type retry struct {
	due int // line number
	msg *message
}

type message struct {
	qid      string
	dom      *domain
	rcpts    []string
	from     string
	attempts int
	failed   bool // a handshake to dom.relay failed for this message
}

type gen struct {
	cfg   LogConfig
	rng   *rand.Rand
	w     *bufio.Writer
	err   error
	truth Truth

	step    time.Duration
	doms    []*domain
	procs   []*proc
	nextPID int
	qidSeq  uint64
	active  []*script
	retries []retry

	tlsWritten bool
	buf        []byte
}

func newGen(w io.Writer, cfg LogConfig) *gen {
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 24 * time.Hour
	}
	if cfg.Lines <= 0 {
		cfg.Lines = 10000
	}
	if cfg.Domains <= 0 {
		cfg.Domains = 200
	}
	if cfg.Host == "" {
		cfg.Host = "mx1"
	}
	g := &gen{
		cfg:     cfg,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		w:       bufio.NewWriterSize(w, 64<<10),
		step:    cfg.Duration / time.Duration(cfg.Lines),
		nextPID: 10000 + int(cfg.Seed%5000),
	}
	g.makeDomains()
	return g
}

func (g *gen) makeDomains() {
	total := 0
	for _, pw := range profileWeights {
		total += pw.w
	}
	for i := 0; i < g.cfg.Domains; i++ {
		name := fmt.Sprintf("%s%d.%s", domainStems[i%len(domainStems)], i/len(domainStems), tlds[i%len(tlds)])
		d := &domain{name: name}
		n := g.rng.IntN(total)
		for _, pw := range profileWeights {
			if n < pw.w {
				d.prof = pw.p
				break
			}
			n -= pw.w
		}
		var addr string
		if g.rng.IntN(10) == 0 {
			addr = fmt.Sprintf("2001:db8:%x:1::%x", i/256+1, i%256+1)
		} else {
			addr = fmt.Sprintf("%d.%d.%d.%d", []int{192, 198, 203}[i%3], []int{0, 51, 0}[i%3], []int{2, 100, 113}[i%3], i%250+1)
		}
		host := "mx" + fmt.Sprint(1+g.rng.IntN(2)) + "." + name
		if g.rng.IntN(8) == 0 {
			host = strings.ToUpper(host[:1]) + host[1:] // relay names keep their case
		}
		d.relay = fmt.Sprintf("%s[%s]:25", host, addr)
		d.suite = suites[g.rng.IntN(len(suites))]
		if d.prof == profAnonymous {
			d.suite = anonSuite
		}
		d.reuse = g.rng.IntN(5) == 0
		g.doms = append(g.doms, d)
	}
}

func (g *gen) run() {
	for g.truth.Lines < g.cfg.Lines && g.err == nil {
		g.startDueRetries()
		switch r := g.rng.IntN(100); {
		case r < 20 && len(g.active) < 6:
			g.newMessage()
		case r < 88 && len(g.active) > 0:
			g.advance(g.rng.IntN(len(g.active)))
		default:
			g.noise()
		}
	}
	// Let running scripts finish so that no session is cut in half.
	for len(g.active) > 0 && g.err == nil {
		g.advance(0)
	}
}

func (g *gen) now() time.Time {
	return g.cfg.Start.Add(g.step * time.Duration(g.truth.Lines)).UTC().Truncate(time.Microsecond)
}

// emit writes one line: RFC 3339 stamp with microseconds, host, tag[pid].
func (g *gen) emit(l genLine) {
	t := g.now()
	g.buf = t.AppendFormat(g.buf[:0], "2006-01-02T15:04:05.000000-07:00")
	g.buf = append(g.buf, ' ')
	g.buf = append(g.buf, g.cfg.Host...)
	g.buf = append(g.buf, ' ')
	g.buf = append(g.buf, l.tag...)
	g.buf = fmt.Appendf(g.buf, "[%d]: ", l.pid)
	g.buf = append(g.buf, l.msg...)
	g.buf = append(g.buf, '\n')
	if _, err := g.w.Write(g.buf); err != nil && g.err == nil {
		g.err = err
	}
	g.truth.Lines++
	yes, no := true, false
	switch l.kind {
	case kTLS:
		g.tlsWritten = true
	case kTLSDel:
		l.truth.TLS = &yes
	case kPlain:
		if g.tlsWritten || l.truth.Fallback {
			l.truth.TLS = &no
		}
	case kNoTLS:
		l.truth.TLS = &no
	}
	if l.truth != nil {
		l.truth.Time = t
		g.truth.Deliveries = append(g.truth.Deliveries, *l.truth)
	}
}

func (g *gen) noiseLine(tag string, pid int, format string, args ...any) {
	g.emit(genLine{tag: tag, pid: pid, msg: fmt.Sprintf(format, args...)})
}

func (g *gen) ip() string {
	return fmt.Sprintf("198.51.100.%d", 1+g.rng.IntN(254))
}

// noise writes one line that is not an outbound delivery.
func (g *gen) noise() {
	ip := g.ip()
	switch g.rng.IntN(8) {
	case 0, 1:
		g.noiseLine("postfix/smtpd", 3000+g.rng.IntN(50), "connect from unknown[%s]", ip)
	case 2:
		g.noiseLine("postfix/smtpd", 3000+g.rng.IntN(50), "disconnect from unknown[%s] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4", ip)
	case 3:
		g.noiseLine("postfix/smtpd", 3000+g.rng.IntN(50), "Anonymous TLS connection established from unknown[%s]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256", ip)
	case 4:
		g.noiseLine("postfix/smtpd", 3000+g.rng.IntN(50), "NOQUEUE: reject: RCPT from unknown[%s]: 554 5.7.1 <%s@%s>: Relay access denied; from=<spam@%s> to=<%s@%s> proto=ESMTP helo=<spam.example>",
			ip, users[g.rng.IntN(len(users))], "elsewhere.example", "spam.example", users[g.rng.IntN(len(users))], "elsewhere.example")
	case 5:
		g.noiseLine("postfix/postscreen", 2900, "CONNECT from [%s]:%d to [192.0.2.1]:25", ip, 1024+g.rng.IntN(60000))
	case 6:
		g.noiseLine("postfix/postscreen", 2900, "PASS OLD [%s]:%d", ip, 1024+g.rng.IntN(60000))
	default:
		g.noiseLine("postfix/anvil", 2901, "statistics: max connection rate 1/60s for (smtp:%s) at %s", ip, g.now().Format(time.Stamp))
	}
}

func (g *gen) newQID() string {
	g.qidSeq++
	// An odd multiplier modulo 2^40 is a bijection: unique, hex-looking ids.
	return fmt.Sprintf("%010X", (g.qidSeq*0x9E3779B97F)&(1<<40-1))
}

// newMessage writes a message's arrival and starts its first attempt.
func (g *gen) newMessage() {
	d := g.doms[g.rng.IntN(len(g.doms))]
	m := &message{qid: g.newQID(), dom: d, from: users[g.rng.IntN(len(users))] + "@" + g.cfg.Host + ".example"}
	n := 1
	if r := g.rng.IntN(10); r == 0 {
		n = 3
	} else if r < 3 {
		n = 2
	}
	for i := 0; i < n; i++ {
		u := users[(g.rng.IntN(len(users))+i)%len(users)]
		if g.rng.IntN(6) == 0 {
			u = strings.ToUpper(u[:1]) + u[1:]
		}
		m.rcpts = append(m.rcpts, fmt.Sprintf("%s%d@%s", u, i, d.name))
	}
	if g.rng.IntN(2) == 0 {
		g.noiseLine("postfix/pickup", 2800, "%s: uid=1000 from=<%s>", m.qid, strings.Split(m.from, "@")[0])
	} else {
		pid := 3000 + g.rng.IntN(50)
		g.noiseLine("postfix/smtpd", pid, "%s: client=submit.%s[192.0.2.200], sasl_method=PLAIN, sasl_username=%s", m.qid, g.cfg.Host, m.from)
	}
	g.noiseLine("postfix/cleanup", 2700+g.rng.IntN(5), "%s: message-id=<%s.%s@%s.example>", m.qid, g.now().Format("20060102150405"), m.qid, g.cfg.Host)
	g.attempt(m)
}

func (g *gen) startDueRetries() {
	for i := 0; i < len(g.retries); {
		if g.retries[i].due <= g.truth.Lines && len(g.active) < 8 {
			m := g.retries[i].msg
			g.retries = append(g.retries[:i], g.retries[i+1:]...)
			g.attempt(m)
			continue
		}
		i++
	}
}

func (g *gen) idleProc() *proc {
	var idle []*proc
	for _, p := range g.procs {
		if !p.busy {
			idle = append(idle, p)
		}
	}
	if len(idle) > 0 && g.rng.IntN(10) != 0 {
		p := idle[g.rng.IntN(len(idle))]
		if p.uses < 100 {
			return p
		}
		// max_use reached: the process exits and a new one takes its place.
		for i, q := range g.procs {
			if q == p {
				g.procs = append(g.procs[:i], g.procs[i+1:]...)
				break
			}
		}
	}
	tag := "postfix/smtp"
	switch g.rng.IntN(10) {
	case 0:
		tag = "postfix-out/smtp"
	case 1:
		tag = "postfix/relay/smtp"
	}
	g.nextPID += 1 + g.rng.IntN(7)
	p := &proc{tag: tag, pid: g.nextPID}
	g.procs = append(g.procs, p)
	if len(g.procs) > 30 {
		// Keep the pool small; drop an idle process.
		for i, q := range g.procs {
			if !q.busy && q != p {
				g.procs = append(g.procs[:i], g.procs[i+1:]...)
				break
			}
		}
	}
	return p
}

func (g *gen) deliveryMsg(m *message, rcpt, relay, extra, dsn string, status delivery.Status, reason string) string {
	delay := fmt.Sprintf("%.2g", 0.05+g.rng.Float64()*3)
	return fmt.Sprintf("%s: to=<%s>, relay=%s, %sdelay=%s, delays=0.01/0.01/0.%d/0.%d, dsn=%s, status=%s (%s)",
		m.qid, rcpt, relay, extra, delay, g.rng.IntN(9), g.rng.IntN(9), dsn, status, reason)
}

func (g *gen) newTruth(m *message, rcpt, relay string, status delivery.Status) *TruthDelivery {
	return &TruthDelivery{QueueID: m.qid, Recipient: rcpt, Domain: strings.ToLower(m.dom.name), Relay: relay, Status: status}
}

// attempt builds the smtp script of one delivery attempt of m.
func (g *gen) attempt(m *message) {
	m.attempts++
	p := g.idleProc()
	p.busy = true
	p.uses++
	d := m.dom
	s := &script{p: p}
	add := func(kind lineKind, msg string, t *TruthDelivery) {
		s.lines = append(s.lines, genLine{tag: p.tag, pid: p.pid, msg: msg, kind: kind, truth: t})
	}
	qmgr := func(format string, args ...any) {
		s.lines = append(s.lines, genLine{tag: "postfix/qmgr", pid: 2600, msg: fmt.Sprintf(format, args...)})
	}
	qmgr("%s: from=<%s>, size=%d, nrcpt=%d (queue active)", m.qid, m.from, 800+g.rng.IntN(50000), len(m.rcpts))
	tlsLine := func(trust delivery.Trust, reused bool) {
		verb := "established"
		if reused {
			verb = "reused"
		}
		st := d.suite
		msg := fmt.Sprintf("%s TLS connection %s to %s: %s with cipher %s (%s bits)%s",
			strings.ToUpper(string(trust[:1]))+string(trust[1:]), verb, d.relay, st.proto, st.cipher, st.bits, st.extra)
		if d.reuse && !reused {
			s.lines = append(s.lines, genLine{tag: "postfix/tlsproxy", pid: 2500, msg: msg})
		}
		add(kTLS, msg, nil)
	}
	var deferred []string
	switch d.prof {
	case profVerified, profTrusted, profUntrusted, profAnonymous:
		trust := trustNames[d.prof]
		reused := d.reuse && g.rng.IntN(2) == 0
		tlsLine(trust, reused)
		extra := ""
		if reused {
			extra = fmt.Sprintf("conn_use=%d, ", 2+g.rng.IntN(4))
		}
		for _, r := range m.rcpts {
			t := g.newTruth(m, r, d.relay, delivery.Sent)
			t.TLSTrust, t.TLSProtocol, t.TLSCipher = trust, d.suite.proto, d.suite.cipher
			dsn, status, reason := "2.0.0", delivery.Sent, "250 2.0.0 Ok: queued as "+g.newQID()
			switch x := g.rng.IntN(40); {
			case x == 0:
				dsn, status = "5.1.1", delivery.Bounced
				reason = fmt.Sprintf("host %s said: 550 5.1.1 <%s>: Recipient address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)", strings.TrimSuffix(d.relay, ":25"), r)
			case x == 1 && m.attempts < 3:
				dsn, status = "4.2.0", delivery.Deferred
				reason = fmt.Sprintf("host %s said: 450 4.2.0 <%s>: Recipient address rejected: Greylisted, see https://postgrey.example/ (in reply to RCPT TO command)", strings.TrimSuffix(d.relay, ":25"), r)
				deferred = append(deferred, r)
			}
			t.Status = status
			add(kTLSDel, g.deliveryMsg(m, r, d.relay, extra, dsn, status, reason), t)
		}
	case profPlain:
		for _, r := range m.rcpts {
			add(kPlain, g.deliveryMsg(m, r, d.relay, "", "2.0.0", delivery.Sent, "250 2.0.0 Ok: queued as "+g.newQID()), g.newTruth(m, r, d.relay, delivery.Sent))
		}
	case profBroken:
		if !m.failed || g.rng.IntN(2) == 0 {
			add(kNoise, fmt.Sprintf("SSL_connect error to %s: -1", d.relay), nil)
			add(kNoise, "warning: TLS library problem: error:0A000102:SSL routines::unsupported protocol:../ssl/statem/statem_lib.c:1994:", nil)
			if m.failed {
				add(kNoise, m.qid+": Cannot start TLS: handshake failure", nil)
			}
		}
		for _, r := range m.rcpts {
			t := g.newTruth(m, r, d.relay, delivery.Sent)
			if !m.failed {
				t.Status, t.TLSFailure = delivery.Deferred, true
				add(kNoTLS, g.deliveryMsg(m, r, d.relay, "", "4.7.5", delivery.Deferred, "Cannot start TLS: handshake failure"), t)
				deferred = append(deferred, r)
			} else {
				t.Fallback = true
				add(kPlain, g.deliveryMsg(m, r, d.relay, "", "2.0.0", delivery.Sent, "250 2.0.0 Ok: queued as "+g.newQID()), t)
			}
		}
		m.failed = true
	case profRequired:
		host := strings.TrimSuffix(d.relay, ":25")
		for _, r := range m.rcpts {
			t := g.newTruth(m, r, d.relay, delivery.Deferred)
			t.TLSFailure = true
			add(kNoTLS, g.deliveryMsg(m, r, d.relay, "", "4.7.4", delivery.Deferred, "TLS is required, but was not offered by host "+host), t)
		}
		if m.attempts < 2 {
			deferred = m.rcpts
		}
	case profVerifyFail:
		add(kNoise, fmt.Sprintf("server certificate verification failed for %s: num=62:hostname mismatch", d.relay), nil)
		tlsLine(delivery.Untrusted, false)
		for _, r := range m.rcpts {
			t := g.newTruth(m, r, d.relay, delivery.Deferred)
			t.TLSTrust, t.TLSProtocol, t.TLSCipher, t.TLSFailure = delivery.Untrusted, d.suite.proto, d.suite.cipher, true
			add(kTLSDel, g.deliveryMsg(m, r, d.relay, "", "4.7.5", delivery.Deferred, "Server certificate not verified"), t)
		}
	case profDown:
		add(kNoise, fmt.Sprintf("connect to %s: Connection refused", d.relay), nil)
		for _, r := range m.rcpts {
			add(kNoConn, g.deliveryMsg(m, r, "none", "", "4.4.1", delivery.Deferred, "connect to "+d.relay+": Connection refused"), g.newTruth(m, r, "none", delivery.Deferred))
		}
		if m.attempts < 2 {
			deferred = m.rcpts
		}
	}
	if len(deferred) == 0 {
		qmgr("%s: removed", m.qid)
	}
	s.done = func() {
		p.busy = false
		if len(deferred) > 0 {
			m.rcpts = deferred
			g.retries = append(g.retries, retry{due: g.truth.Lines + 20 + g.rng.IntN(400), msg: m})
		}
	}
	g.active = append(g.active, s)
}

// advance writes the next line of an active script.
func (g *gen) advance(i int) {
	s := g.active[i]
	l := s.lines[0]
	s.lines = s.lines[1:]
	g.emit(l)
	if len(s.lines) == 0 {
		g.active = append(g.active[:i], g.active[i+1:]...)
		s.done()
	}
}
