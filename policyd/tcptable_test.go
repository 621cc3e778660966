package policyd

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

func TestTCPEncodeDecode(t *testing.T) {
	tests := []struct{ raw, enc string }{
		{"may", "may"},
		{"encrypt protocols=>=TLSv1.2", "encrypt%20protocols=>=TLSv1.2"},
		{"100%", "100%25"},
		{"a\tb\nc\rd\x00e\x1f\x7f", "a%09b%0Ac%0Dd%00e%1F%7F"},
		{"bücher", "b%C3%BCcher"},
		{"\xff", "%FF"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := string(AppendTCPEncoded(nil, tt.raw)); got != tt.enc {
			t.Errorf("encode(%q) = %q, want %q", tt.raw, got, tt.enc)
		}
		dec, err := decodeTCP([]byte(tt.enc))
		if err != nil || string(dec) != tt.raw {
			t.Errorf("decode(%q) = %q, %v, want %q", tt.enc, dec, err, tt.raw)
		}
	}
	// Lowercase hex is accepted on input.
	if dec, err := decodeTCP([]byte("b%c3%bccher")); err != nil || string(dec) != "bücher" {
		t.Errorf("lowercase escapes: %q, %v", dec, err)
	}
	for _, bad := range []string{"%", "%2", "abc%", "%zz", "%2g", "%g2", "a b", "a\tb", "a\x00", "a\x7f", "\xc3\xbc", "%%41"} {
		if dec, err := decodeTCP([]byte(bad)); err == nil {
			t.Errorf("decode(%q) = %q, want error", bad, dec)
		} else if !errors.Is(err, errTCPTable) {
			t.Errorf("decode(%q) error %v does not wrap errTCPTable", bad, err)
		}
	}
}

func TestReadLine(t *testing.T) {
	long := strings.Repeat("k", 9000)
	tests := []struct {
		in    string
		lines []string
		err   error
	}{
		{"get a\nget b\n", []string{"get a", "get b"}, io.EOF},
		{"get " + long + "\n", []string{"get " + long}, io.EOF},
		{"get a", nil, errTCPUnterminated},
		{strings.Repeat("x", maxTCPRequest) + "\n", []string{strings.Repeat("x", maxTCPRequest)}, io.EOF},
		{strings.Repeat("x", maxTCPRequest+1) + "\n", nil, errTCPTooLong},
		{strings.Repeat("x", 1<<20), nil, errTCPTooLong},
		{"", nil, io.EOF},
	}
	for _, tt := range tests {
		br := bufio.NewReaderSize(strings.NewReader(tt.in), 64)
		var scratch []byte
		var got []string
		var err error
		for {
			var line []byte
			if line, err = ReadTCPLine(br, maxTCPRequest, &scratch); err != nil {
				break
			}
			got = append(got, string(line))
		}
		if !errors.Is(err, tt.err) || strings.Join(got, "|") != strings.Join(tt.lines, "|") {
			t.Errorf("ReadTCPLine(%.20q...) = %d lines, %v; want %d lines, %v", tt.in, len(got), err, len(tt.lines), tt.err)
		}
	}
}

func TestTCPTablePipe(t *testing.T) {
	srv := newTestServer(t, "may")
	s, c := net.Pipe()
	done := make(chan struct{})
	go func() { srv.serveConn(context.Background(), s, protoTCPTable); close(done) }()
	cl := &client{t: t, c: c, br: bufio.NewReader(c)}
	tests := []struct{ req, want string }{
		{"get example.com", "200 encrypt%20protocols=>=TLSv1.2"},
		{"get EXAMPLE.com", "200 encrypt%20protocols=>=TLSv1.2"},
		{"get example%2Ecom", "200 encrypt%20protocols=>=TLSv1.2"},
		{"get a.b.corp.example", "200 verify%20match=hostname"},
		{"get [mx.example.net]:587", "200 secure"},
		{"get b%C3%BCcher.example", "200 dane"},
		{"get elsewhere.example", "200 may"},
		{"get example.com\r", "200 encrypt%20protocols=>=TLSv1.2"},
		{"get ex%ZZ", "400 malformed-key-encoding"},
		{"get ex%4", "400 malformed-key-encoding"},
		{"get a b", "400 malformed-key-encoding"},
		{"get a\x00b", "400 malformed-key-encoding"},
		{"get a%00b.example", "400 invalid-key"},
		{"get a%0Ab.example", "400 invalid-key"},
		{"get a%20b.example", "400 invalid-key"},
		{"get ", "400 invalid-key"},
		{"get " + strings.Repeat("a", 513), "400 invalid-key"},
		{"put example.com encrypt", "400 unknown-command-want-get"},
		{"GET example.com", "400 unknown-command-want-get"},
		{"", "400 unknown-command-want-get"},
		{"get example.com", "200 encrypt%20protocols=>=TLSv1.2"}, // still in sync
	}
	for _, tt := range tests {
		cl.send(tt.req + "\n")
		if got := cl.line(); got != tt.want {
			t.Errorf("request %q: got %q, want %q", tt.req, got, tt.want)
		}
	}
	c.Close()
	<-done
}

func TestTCPTableNotFound(t *testing.T) {
	srv := newTestServer(t, "")
	_, addr := listen(t, srv, "tcp", protoTCPTable)
	cl := dial(t, "tcp", addr)
	cl.send("get nowhere.example\n")
	if got := cl.line(); !strings.HasPrefix(got, "500 ") {
		t.Errorf("not found: %q, want 500", got)
	}
	srv2 := &Server{Table: NewTable("may")}
	_, addr2 := listen(t, srv2, "tcp", protoTCPTable)
	cl2 := dial(t, "tcp", addr2)
	cl2.send("get example.com\n")
	if got := cl2.line(); !strings.HasPrefix(got, "400 ") {
		t.Errorf("unloaded table: %q, want 400", got)
	}
}

func TestTCPTableTCPAndUnix(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			srv := newTestServer(t, "may")
			_, addr := listen(t, srv, network, protoTCPTable)
			cl := dial(t, network, addr)
			for i := 0; i < 1000; i++ {
				cl.send("get x.corp.example\n")
				if got := cl.line(); got != "200 verify%20match=hostname" {
					t.Fatalf("request %d: %q", i, got)
				}
			}
			// Pipelined.
			cl.send(strings.Repeat("get example.com\nget nothing.example\n", 200))
			for i := 0; i < 400; i++ {
				want := "200 encrypt%20protocols=>=TLSv1.2"
				if i%2 == 1 {
					want = "200 may"
				}
				if got := cl.line(); got != want {
					t.Fatalf("pipelined %d: %q, want %q", i, got, want)
				}
			}
		})
	}
}

func TestTCPTableTooLong(t *testing.T) {
	srv := newTestServer(t, "may")
	_, addr := listen(t, srv, "tcp", protoTCPTable)
	cl := dial(t, "tcp", addr)
	// A 1 MB line: the server gives up after 10,000 bytes.
	go io.WriteString(cl.c, "get "+strings.Repeat("a", 1<<20)+"\n")
	cl.closed("400 request-too-long\n")
	// Binary garbage without a newline, then EOF: just closed.
	cl2 := dial(t, "tcp", addr)
	cl2.send("\x00\xff\xfe garbage")
	cl2.c.(*net.TCPConn).CloseWrite()
	cl2.closed("")
	// Others are unaffected.
	cl3 := dial(t, "tcp", addr)
	cl3.send("get example.com\n")
	if got := cl3.line(); got != "200 encrypt%20protocols=>=TLSv1.2" {
		t.Errorf("after bad clients: %q", got)
	}
}

func TestTCPTableReplyTooLong(t *testing.T) {
	// A (invalid, kept verbatim) value that encodes to more than 4096 bytes.
	long := "encrypt" + strings.Repeat(" x", 1500)
	tab := NewTable("")
	tab.Store(NewSnapshot([]Override{{Key: "big.example", Policy: long}}, ""))
	srv := &Server{Table: tab}
	s, c := net.Pipe()
	defer c.Close()
	go srv.serveConn(context.Background(), s, protoTCPTable)
	go io.WriteString(c, "get big.example\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "400 reply-too-long\n" {
		t.Errorf("got %q, %v", line, err)
	}
}
