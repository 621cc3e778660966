package policyd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
)

// MaxQuery is Postfix's socketmap query limit (socketmap_table(5)).
const MaxQuery = 10000

// MaxReply is Postfix's socketmap reply limit (socketmap_table(5)).
const MaxReply = 100000

// Netstring errors. After any of them the stream cannot be resynchronised.
var (
	errNetstring         = errors.New("policyd: malformed netstring")
	errNetstringLength   = fmt.Errorf("%w: length is not a decimal number", errNetstring)
	errNetstringZero     = fmt.Errorf("%w: length has a leading zero", errNetstring)
	errNetstringTooLong  = fmt.Errorf("%w: longer than the limit", errNetstring)
	errNetstringNoComma  = fmt.Errorf("%w: missing trailing comma", errNetstring)
	errNetstringNoLength = fmt.Errorf("%w: missing length", errNetstring)
)

// ReadNetstring reads one netstring ("len:data,", https://cr.yp.to/proto/netstrings.txt)
// of at most max data bytes. The length has no leading zeros, as the
// specification requires. The returned slice aliases br's buffer or
// *scratch and is valid until the next read; callers may modify it.
// A clean end of stream before the first byte is io.EOF.
func ReadNetstring(br *bufio.Reader, max int, scratch *[]byte) ([]byte, error) {
	n, digits := 0, 0
	for {
		c, err := br.ReadByte()
		if err != nil {
			if err == io.EOF && digits > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if c == ':' {
			if digits == 0 {
				return nil, errNetstringNoLength
			}
			break
		}
		if c < '0' || c > '9' {
			return nil, errNetstringLength
		}
		if digits == 1 && n == 0 {
			return nil, errNetstringZero
		}
		n = n*10 + int(c-'0')
		digits++
		if n > max {
			return nil, errNetstringTooLong
		}
	}
	if n < br.Size() {
		p, err := br.Peek(n + 1)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if p[n] != ',' {
			return nil, errNetstringNoComma
		}
		br.Discard(n + 1) // cannot fail: n+1 bytes are buffered
		return p[:n:n], nil
	}
	if cap(*scratch) < n+1 {
		*scratch = make([]byte, n+1)
	}
	buf := (*scratch)[:n+1]
	if _, err := io.ReadFull(br, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if buf[n] != ',' {
		return nil, errNetstringNoComma
	}
	return buf[:n:n], nil
}

// WriteNetstring writes prefix+value as one netstring. It builds the reply
// in bw's free buffer space, so it does not allocate unless bw is nearly full.
func WriteNetstring(bw *bufio.Writer, prefix, value string) error {
	b := bw.AvailableBuffer()
	b = strconv.AppendInt(b, int64(len(prefix)+len(value)), 10)
	b = append(b, ':')
	b = append(b, prefix...)
	b = append(b, value...)
	b = append(b, ',')
	_, err := bw.Write(b)
	return err
}

// socketmapConn serves socketmap_table(5) requests on one persistent
// connection: "name key" in, "OK value", "NOTFOUND ", "TEMP reason" or
// "PERM reason" out. A framing error gets a PERM reply and ends the
// connection, as the stream cannot be resynchronised.
func (s *Server) socketmapConn(ctx context.Context, c *srvConn) {
	nc := c.nc
	br := bufio.NewReaderSize(nc, ReadBufSize)
	bw := bufio.NewWriterSize(nc, WriteBufSize)
	idle := s.idleTimeout()
	mapName := s.mapName()
	log := s.log()
	var scratch []byte
	for {
		if !s.awaitRequest(ctx, c, br, bw, idle, log, "socketmap") {
			return
		}
		req, err := ReadNetstring(br, MaxQuery, &scratch)
		c.state.Store(stateActive)
		t0 := s.startTimer()
		if err != nil {
			if errors.Is(err, errNetstring) {
				log.DebugContext(ctx, "socketmap: closing connection after malformed request", "remote", nc.RemoteAddr().String(), "err", err)
				WriteNetstring(bw, "PERM ", err.Error())
				s.observe(ProtoSocketmap, OriginNone, OutcomePerm, t0)
				bw.Flush()
				return
			}
			if err != io.EOF {
				log.DebugContext(ctx, "socketmap read ended", "remote", nc.RemoteAddr().String(), "err", err)
			}
			// Replies to complete requests read before a truncated one
			// (or before the client half-closed) are still owed.
			bw.Flush()
			return
		}
		o, out := s.answerSocketmap(bw, req, mapName)
		s.observe(ProtoSocketmap, o, out, t0)
	}
}

// answerSocketmap writes the reply to one request and returns what
// decided it and its class. req may be modified.
func (s *Server) answerSocketmap(bw *bufio.Writer, req []byte, mapName string) (Origin, Outcome) {
	sp := bytes.IndexByte(req, ' ')
	if sp < 0 {
		WriteNetstring(bw, "PERM ", "malformed request (want \"name key\")")
		return OriginNone, OutcomePerm
	}
	name, key := req[:sp], req[sp+1:]
	tlsrpt := s.TLSRPT
	if string(name) != mapName {
		if !bytes.HasSuffix(name, []byte(TLSRPTSuffix)) || string(name[:len(name)-len(TLSRPTSuffix)]) != mapName {
			WriteNetstring(bw, "PERM ", "unknown map name (want "+mapName+")")
			return OriginNone, OutcomePerm
		}
		tlsrpt = true
	}
	if err := checkLookupKey(key); err != nil {
		WriteNetstring(bw, "PERM ", err.Error())
		return OriginNone, OutcomePerm
	}
	r, ok := s.lookup(key)
	switch {
	case !ok:
		WriteNetstring(bw, "TEMP ", "policy table not loaded yet")
		return OriginNone, OutcomeTemp
	case r.Found:
		v := r.Value
		if tlsrpt && r.TLSRPT != "" && len("OK ")+len(v)+1+len(r.TLSRPT) <= MaxReply {
			v += " " + r.TLSRPT
		}
		WriteNetstring(bw, "OK ", v)
		return originOf(r), OutcomeOK
	default:
		WriteNetstring(bw, "NOTFOUND ", "")
		return originOf(r), OutcomeNotFound
	}
}

// lookup lowercases key in place and looks it up in the current snapshot,
// or before the first one in the table's warm-up source. It reports false
// if there is neither, or the answer cannot be known now (TEMP).
func (s *Server) lookup(key []byte) (Result, bool) {
	if s.Table == nil {
		return Result{}, false
	}
	ascii := true
	for i, c := range key {
		if c >= 'A' && c <= 'Z' {
			key[i] = c + 'a' - 'A'
		} else if c >= 0x80 {
			ascii = false
		}
	}
	snap := s.Table.Load()
	if snap == nil {
		if snap = s.Table.warmupSnapshot(key, ascii, s.log()); snap == nil {
			return Result{}, false
		}
	}
	now := s.now().UnixNano()
	var r Result
	if ascii {
		r = s.Table.withPublished(key, snap.lookupBytes(key, now))
		if r.Rule == RuleUnavailable {
			return Result{}, false
		}
	} else {
		r = snap.lookupSlow(string(key), now)
	}
	if len(r.Expired) > 0 && s.log().Enabled(context.Background(), slog.LevelDebug) {
		s.log().Debug("lookup skipped expired overrides", "key", string(key), "expired", r.Expired, "rule", r.Rule)
	}
	return r, true
}
