package discover

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailtls/mailtls/internal/clip"
)

// Timeouts are the limits of the individual steps of a check. The whole
// check is also bounded by Checker.Timeout.
type Timeouts struct {
	DNS      time.Duration // one DNS query attempt
	Connect  time.Duration // TCP connect to one MX address
	Greeting time.Duration // the 220 greeting
	Command  time.Duration // the reply to EHLO, STARTTLS or QUIT
	TLS      time.Duration // the TLS handshake
	HTTP     time.Duration // the MTA-STS policy fetch
}

// TimeoutsFor derives step timeouts from an overall limit. The critical
// path is DNS (MX, then addresses), connect, greeting, EHLO, STARTTLS and
// the handshake; each step gets a share so that a stuck step is reported
// as that step, not as the overall limit.
func TimeoutsFor(total time.Duration) Timeouts {
	if total <= 0 {
		total = DefaultTimeout
	}
	capAt := func(d, max time.Duration) time.Duration { return min(d, max) }
	return Timeouts{
		DNS:      capAt(total/6, 5*time.Second),
		Connect:  capAt(total/4, 30*time.Second),
		Greeting: total / 4,
		Command:  total / 6,
		TLS:      total / 4,
		HTTP:     total / 3,
	}
}

// orDefault fills zero fields from TimeoutsFor(total).
func (t Timeouts) orDefault(total time.Duration) Timeouts {
	d := TimeoutsFor(total)
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.DNS, &d.DNS}, {&t.Connect, &d.Connect}, {&t.Greeting, &d.Greeting},
		{&t.Command, &d.Command}, {&t.TLS, &d.TLS}, {&t.HTTP, &d.HTTP},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return t
}

// DialFunc connects to address addr ("ip:port") of MX host mx. Tests map
// each MX name to its own local server.
type DialFunc func(ctx context.Context, mx, addr string) (net.Conn, error)

// Probe steps, as reported in Probe.FailedStep.
const (
	StepConnect  = "connect"
	StepGreeting = "greeting"
	StepEHLO     = "ehlo"
	StepSTARTTLS = "starttls"
	StepTLS      = "tls"
)

// Probe is what an SMTP session with one MX showed.
type Probe struct {
	// Address is the "ip:port" the session used (the last one tried when
	// none connected).
	Address   string `json:"address,omitempty"`
	Connected bool   `json:"connected"`
	// Banner is the first line of the 220 greeting.
	Banner string `json:"banner,omitempty"`
	// Extensions are the EHLO keywords, upper case.
	Extensions []string `json:"extensions,omitempty"`
	STARTTLS   bool     `json:"starttls"`
	// TLS is set when the handshake completed.
	TLS *TLSResult `json:"tls,omitempty"`
	// FailedStep and Error describe the first failure, if any. A server
	// without STARTTLS is not a failure.
	FailedStep string `json:"failed_step,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

// TLSResult describes the negotiated TLS session and the certificate.
type TLSResult struct {
	Version     string `json:"version"`
	CipherSuite string `json:"cipher_suite"`
	// ChainVerified is set when the chain validates against the roots
	// (system roots unless configured) at the time of the check.
	ChainVerified bool   `json:"chain_verified"`
	VerifyError   string `json:"verify_error,omitempty"`
	// NameMatch is set when the certificate is valid for the MX host name.
	NameMatch  bool      `json:"name_matches_mx"`
	Names      []string  `json:"names"`
	Subject    string    `json:"subject"`
	Issuer     string    `json:"issuer"`
	NotBefore  time.Time `json:"not_before"`
	NotAfter   time.Time `json:"not_after"`
	Expired    bool      `json:"expired"`
	SelfSigned bool      `json:"self_signed"`

	chain []*x509.Certificate // as presented, leaf first; for DANE matching
}

// Prober runs the SMTP part of a check.
type Prober struct {
	HELO     string
	Timeouts Timeouts
	// Dial connects; nil means a net.Dialer.
	Dial DialFunc
	// RootCAs verifies certificate chains; nil means the system roots.
	RootCAs *x509.CertPool
	// Now is the clock for certificate validity; nil means time.Now.
	Now func() time.Time
}

// maxAddrTries bounds how many addresses of one MX are tried until one
// accepts the connection.
const maxAddrTries = 3

// maxReplyLine is the longest reply line we accept; RFC 5321 §4.5.3.1.5
// sets 512, servers exceed it in practice.
const maxReplyLine = 4096

// Probe connects to the first of addrs that answers, reads the greeting,
// sends EHLO, and if STARTTLS is offered, STARTTLS and a TLS handshake;
// then QUIT. It never sends MAIL FROM. Failures are recorded in the
// result, which is always returned.
func (p *Prober) Probe(ctx context.Context, mx string, addrs []string) Probe {
	start := time.Now()
	res := p.probe(ctx, mx, addrs)
	res.DurationMS = time.Since(start).Milliseconds()
	return res
}

func (p *Prober) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Prober) probe(ctx context.Context, mx string, addrs []string) (res Probe) {
	fail := func(step, format string, args ...any) Probe {
		res.FailedStep = step
		res.Error = fmt.Sprintf(format, args...)
		return res
	}
	if len(addrs) == 0 {
		return fail(StepConnect, "no IPv4 or IPv6 address to connect to")
	}
	dial := p.Dial
	if dial == nil {
		dial = func(ctx context.Context, _, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}
	}
	var conn net.Conn
	var errs []string
	for i, a := range addrs {
		if i == maxAddrTries {
			break
		}
		res.Address = a
		cctx, cancel := context.WithTimeout(ctx, p.Timeouts.Connect)
		c, err := dial(cctx, mx, a)
		cancel()
		if err == nil {
			conn = c
			break
		}
		errs = append(errs, a+": "+describeIOErr(ctx, err, "no TCP connection within "+p.Timeouts.Connect.String()))
		if ctx.Err() != nil {
			break
		}
	}
	if conn == nil {
		return fail(StepConnect, "cannot connect: %s", strings.Join(errs, "; "))
	}
	res.Connected = true
	defer conn.Close()
	// The overall deadline interrupts any blocking read or write.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	s := &session{conn: conn, br: bufio.NewReaderSize(conn, maxReplyLine)}

	code, lines, err := s.read(p.Timeouts.Greeting)
	if err != nil {
		return fail(StepGreeting, "%s", describeIOErr(ctx, err,
			fmt.Sprintf("no SMTP greeting within %s: the server accepted the connection but sent nothing (black hole, tarpit or firewall)", p.Timeouts.Greeting)))
	}
	res.Banner = clip.Text(lines[0], 200)
	if code != 220 {
		return fail(StepGreeting, "greeting %d %s: the server refuses service", code, clip.Text(lines[0], 200))
	}

	code, lines, err = s.cmd("EHLO "+p.HELO, p.Timeouts.Command)
	if err != nil {
		return fail(StepEHLO, "EHLO: %s", describeIOErr(ctx, err, "no reply within "+p.Timeouts.Command.String()))
	}
	if code != 250 {
		// Postfix would fall back to HELO, which has no STARTTLS.
		s.quit(p.Timeouts.Command)
		return fail(StepEHLO, "EHLO rejected: %d %s (without EHLO there is no STARTTLS)", code, clip.Text(lines[0], 200))
	}
	for _, l := range lines[1:] {
		kw, _, _ := strings.Cut(strings.TrimSpace(l), " ")
		kw = strings.ToUpper(kw)
		if kw == "" {
			continue
		}
		res.Extensions = append(res.Extensions, kw)
		if kw == "STARTTLS" {
			res.STARTTLS = true
		}
	}
	if !res.STARTTLS {
		s.quit(p.Timeouts.Command)
		return res
	}

	code, lines, err = s.cmd("STARTTLS", p.Timeouts.Command)
	if err != nil {
		return fail(StepSTARTTLS, "STARTTLS: %s", describeIOErr(ctx, err, "no reply within "+p.Timeouts.Command.String()))
	}
	if code != 220 {
		s.quit(p.Timeouts.Command)
		return fail(StepSTARTTLS, "STARTTLS rejected: %d %s", code, clip.Text(lines[0], 200))
	}
	if s.br.Buffered() > 0 {
		// Data after the 220 before the handshake is an injection attempt
		// or a broken server (CVE-2011-0411); do not go on.
		return fail(StepSTARTTLS, "server sent data after its 220 reply to STARTTLS (possible command injection)")
	}
	tc := tls.Client(conn, p.tlsConfig(mx))
	if err := conn.SetDeadline(time.Now().Add(p.Timeouts.TLS)); err != nil {
		return fail(StepTLS, "%v", err)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail(StepTLS, "TLS handshake failed: %s", describeIOErr(ctx, err, "not finished within "+p.Timeouts.TLS.String()))
	}
	res.TLS = p.inspect(mx, tc.ConnectionState())
	// Leave politely; the outcome does not matter any more.
	ts := &session{conn: tc, br: bufio.NewReaderSize(tc, maxReplyLine)}
	ts.quit(p.Timeouts.Command)
	return res
}

// tlsConfig offers what Postfix with OpenSSL defaults would: TLS 1.0 and
// up and the RSA key exchange suites that Go leaves out by default, so a
// server that works with Postfix works here. Verification is done
// afterwards in inspect, so that a bad certificate is reported rather than
// aborting the handshake (opportunistic levels would still deliver).
func (p *Prober) tlsConfig(mx string) *tls.Config {
	var suites []uint16
	for _, cs := range tls.CipherSuites() {
		suites = append(suites, cs.ID)
	}
	return &tls.Config{
		ServerName:         mx,
		InsecureSkipVerify: true,
		MinVersion:         tls.VersionTLS10,
		CipherSuites:       suites,
	}
}

// inspect records the session parameters and checks the certificate.
func (p *Prober) inspect(mx string, cs tls.ConnectionState) *TLSResult {
	r := &TLSResult{
		Version:     tls.VersionName(cs.Version),
		CipherSuite: tls.CipherSuiteName(cs.CipherSuite),
		chain:       cs.PeerCertificates,
	}
	if len(cs.PeerCertificates) == 0 {
		r.VerifyError = "the server sent no certificate"
		return r
	}
	now := p.now()
	leaf := cs.PeerCertificates[0]
	r.Names = leaf.DNSNames
	if len(r.Names) == 0 && leaf.Subject.CommonName != "" {
		r.Names = []string{leaf.Subject.CommonName}
	}
	r.Subject = leaf.Subject.String()
	r.Issuer = leaf.Issuer.String()
	r.NotBefore = leaf.NotBefore.UTC()
	r.NotAfter = leaf.NotAfter.UTC()
	r.Expired = now.After(leaf.NotAfter)
	r.SelfSigned = bytes.Equal(leaf.RawSubject, leaf.RawIssuer) &&
		leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil
	r.NameMatch = leaf.VerifyHostname(strings.TrimSuffix(mx, ".")) == nil

	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: p.RootCAs, Intermediates: inter, CurrentTime: now})
	switch {
	case err == nil:
		r.ChainVerified = true
	case r.Expired:
		r.VerifyError = fmt.Sprintf("certificate expired on %s", r.NotAfter.Format(time.RFC3339))
	case r.SelfSigned:
		r.VerifyError = "self-signed certificate"
	default:
		r.VerifyError = err.Error()
	}
	return r
}

// session is the client side of an SMTP conversation.
type session struct {
	conn interface {
		io.Writer
		SetDeadline(time.Time) error
	}
	br *bufio.Reader
}

// read reads one reply within d.
func (s *session) read(d time.Duration) (int, []string, error) {
	if err := s.conn.SetDeadline(time.Now().Add(d)); err != nil {
		return 0, nil, err
	}
	return readReply(s.br)
}

// cmd sends one command line and reads the reply within d.
func (s *session) cmd(line string, d time.Duration) (int, []string, error) {
	if err := s.conn.SetDeadline(time.Now().Add(d)); err != nil {
		return 0, nil, err
	}
	if _, err := io.WriteString(s.conn, line+"\r\n"); err != nil {
		return 0, nil, err
	}
	return readReply(s.br)
}

// quit ends the session; the reply is not needed.
func (s *session) quit(d time.Duration) {
	s.cmd("QUIT", d) //nolint:errcheck // best effort
}

// errBadReply is wrapped by malformed-reply errors.
var errBadReply = errors.New("malformed SMTP reply")

// readReply reads a possibly multi-line reply (RFC 5321 §4.2.1): lines
// "250-text" continue, "250 text" (or a bare "250") ends it. All lines must
// carry the same code.
func readReply(br *bufio.Reader) (int, []string, error) {
	var lines []string
	code := 0
	for {
		raw, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, nil, fmt.Errorf("%w: line longer than %d bytes", errBadReply, maxReplyLine)
		}
		if err != nil {
			if len(raw) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, err
		}
		l := strings.TrimRight(string(raw), "\r\n")
		if len(l) < 3 {
			return 0, nil, fmt.Errorf("%w: %q", errBadReply, clip.Text(l, 80))
		}
		c, err := strconv.Atoi(l[:3])
		if err != nil || c < 200 || c > 599 {
			return 0, nil, fmt.Errorf("%w: %q", errBadReply, clip.Text(l, 80))
		}
		if code != 0 && c != code {
			return 0, nil, fmt.Errorf("%w: code %d after %d in one reply", errBadReply, c, code)
		}
		code = c
		last := len(l) == 3 || l[3] == ' '
		if !last && l[3] != '-' {
			return 0, nil, fmt.Errorf("%w: %q", errBadReply, clip.Text(l, 80))
		}
		text := ""
		if len(l) > 4 {
			text = l[4:]
		}
		lines = append(lines, text)
		if last {
			return code, lines, nil
		}
		if len(lines) > 100 {
			return 0, nil, fmt.Errorf("%w: more than 100 lines", errBadReply)
		}
	}
}

// describeIOErr explains an I/O error: timeouts get the step's own
// message, a peer that hung up is named as such, and the overall deadline
// is told apart from a step's.
func describeIOErr(ctx context.Context, err error, timeoutMsg string) string {
	if ctx.Err() != nil {
		return "the overall check timeout ran out"
	}
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return timeoutMsg
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection closed by the server"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	}
	return err.Error()
}
