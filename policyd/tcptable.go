package policyd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
)

// maxTCPRequest caps a tcp_table request line (without its newline).
// Postfix keys are far shorter; this matches the socketmap query limit.
const maxTCPRequest = 10000

// MaxTCPReply is the longest reply line tcp_table(5) clients accept.
const MaxTCPReply = 4096

var (
	errTCPTable        = errors.New("policyd: malformed tcp_table request")
	errTCPTooLong      = fmt.Errorf("%w: line too long", errTCPTable)
	errTCPBadEscape    = fmt.Errorf("%w: bad %%XX escape", errTCPTable)
	errTCPUnencoded    = fmt.Errorf("%w: byte that must be %%XX-encoded", errTCPTable)
	errTCPUnterminated = fmt.Errorf("%w: no newline before end of stream", errTCPTable)
)

// tcpNeedsEncoding reports whether tcp_table(5) requires c to be sent as
// %XX: "%", whitespace, control bytes and bytes >= 0x80.
func tcpNeedsEncoding(c byte) bool {
	return c <= ' ' || c == '%' || c >= 0x7f
}

// AppendTCPEncoded appends s to dst, %XX-encoding (uppercase hex) the bytes
// tcp_table(5) requires.
func AppendTCPEncoded(dst []byte, s string) []byte {
	const hexdigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if tcpNeedsEncoding(c) {
			dst = append(dst, '%', hexdigits[c>>4], hexdigits[c&15])
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// decodeTCP decodes %XX escapes in b in place. It rejects a malformed
// escape and any byte a client should have encoded.
func decodeTCP(b []byte) ([]byte, error) {
	j := 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '%':
			if i+2 >= len(b) {
				return nil, errTCPBadEscape
			}
			hi, ok1 := unhex(b[i+1])
			lo, ok2 := unhex(b[i+2])
			if !ok1 || !ok2 {
				return nil, errTCPBadEscape
			}
			c = hi<<4 | lo
			i += 2
		case tcpNeedsEncoding(c):
			return nil, errTCPUnencoded
		}
		b[j] = c
		j++
	}
	return b[:j], nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// ReadTCPLine reads one newline-terminated line of at most max bytes and
// returns it without the newline. The result aliases br's buffer or
// *scratch and is valid until the next read.
func ReadTCPLine(br *bufio.Reader, max int, scratch *[]byte) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == nil {
		if len(line)-1 > max {
			return nil, errTCPTooLong
		}
		return line[:len(line)-1], nil
	}
	buf := (*scratch)[:0]
	for {
		switch err {
		case nil:
			buf = append(buf, line...)
			*scratch = buf
			if len(buf)-1 > max {
				return nil, errTCPTooLong
			}
			return buf[:len(buf)-1], nil
		case bufio.ErrBufferFull:
			buf = append(buf, line...)
			if len(buf) > max {
				return nil, errTCPTooLong
			}
		case io.EOF:
			if len(line) > 0 || len(buf) > 0 {
				return nil, errTCPUnterminated
			}
			return nil, io.EOF
		default:
			return nil, err
		}
		line, err = br.ReadSlice('\n')
	}
}

// parseTCPRequest returns the decoded key of a "get key" request line.
func parseTCPRequest(line []byte) ([]byte, error) {
	line = bytes.TrimSuffix(line, []byte{'\r'}) // tolerate telnet
	if !bytes.HasPrefix(line, []byte("get ")) {
		return nil, fmt.Errorf("%w: unknown command", errTCPTable)
	}
	return decodeTCP(line[len("get "):])
}

// tcpTableConn serves tcp_table(5) requests on one persistent connection:
// "get key\n" in, "200 value\n", "500 text\n" (not found) or "400 text\n"
// (temporary error) out. An over-long line gets a 400 reply and ends the
// connection; other malformed requests get a 400 reply.
func (s *Server) tcpTableConn(ctx context.Context, c *srvConn) {
	nc := c.nc
	br := bufio.NewReaderSize(nc, ReadBufSize)
	bw := bufio.NewWriterSize(nc, WriteBufSize)
	idle := s.idleTimeout()
	log := s.log()
	var scratch []byte
	for {
		if !s.awaitRequest(ctx, c, br, bw, idle, log, "tcp_table") {
			return
		}
		line, err := ReadTCPLine(br, maxTCPRequest, &scratch)
		c.state.Store(stateActive)
		t0 := s.startTimer()
		if err != nil {
			if errors.Is(err, errTCPTooLong) {
				bw.WriteString("400 request-too-long\n")
				s.observe(ProtoTCPTable, OriginNone, OutcomeTemp, t0)
			}
			if err != io.EOF {
				log.DebugContext(ctx, "tcp_table read ended", "remote", nc.RemoteAddr().String(), "err", err)
			}
			// Replies to complete requests read before a truncated one
			// (or before the client half-closed) are still owed.
			bw.Flush()
			return
		}
		o, out := s.answerTCPTable(bw, line)
		s.observe(ProtoTCPTable, o, out, t0)
	}
}

// answerTCPTable writes the reply to one request line and returns what
// decided it and its class. line may be modified.
func (s *Server) answerTCPTable(bw *bufio.Writer, line []byte) (Origin, Outcome) {
	key, err := parseTCPRequest(line)
	if err != nil {
		if errors.Is(err, errTCPBadEscape) || errors.Is(err, errTCPUnencoded) {
			bw.WriteString("400 malformed-key-encoding\n")
		} else {
			bw.WriteString("400 unknown-command-want-get\n")
		}
		return OriginNone, OutcomeTemp
	}
	if err := checkLookupKey(key); err != nil {
		bw.WriteString("400 invalid-key\n")
		return OriginNone, OutcomeTemp
	}
	r, ok := s.lookup(key)
	switch {
	case !ok:
		bw.WriteString("400 policy-table-not-loaded-yet\n")
		return OriginNone, OutcomeTemp
	case r.Found:
		b := bw.AvailableBuffer()
		b = append(b, "200 "...)
		b = AppendTCPEncoded(b, r.Value)
		if s.TLSRPT && r.TLSRPT != "" {
			// The attributes only when the whole reply fits; the policy
			// alone is a complete answer.
			if w := AppendTCPEncoded(append(b, "%20"...), r.TLSRPT); len(w) <= MaxTCPReply {
				b = w
			}
		}
		if len(b) > MaxTCPReply {
			s.log().Warn("tcp_table reply too long for Postfix", "key", string(key), "len", len(b))
			bw.WriteString("400 reply-too-long\n")
			return originOf(r), OutcomeTemp
		}
		bw.Write(append(b, '\n'))
		return originOf(r), OutcomeOK
	default:
		bw.WriteString("500 not-found\n")
		return originOf(r), OutcomeNotFound
	}
}
