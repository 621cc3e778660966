package discover

import (
	"bufio"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseTLSRPTRecord(t *testing.T) {
	tests := []struct {
		in      string
		rua     []string
		wantErr string
	}{
		{in: "v=TLSRPTv1; rua=mailto:reports@example.com", rua: []string{"mailto:reports@example.com"}},
		{in: "v=TLSRPTv1;rua=https://reporting.example.com/v1/tlsrpt;", rua: []string{"https://reporting.example.com/v1/tlsrpt"}},
		{in: "v=TLSRPTv1; rua=mailto:a@example.com , https://r.example.net/x", rua: []string{"mailto:a@example.com", "https://r.example.net/x"}},
		{in: "v=TLSRPTv1; ext=1; rua=mailto:a@b", rua: []string{"mailto:a@b"}},
		{in: "v=TLSRPTv1; rua=mailto:a%2Cb@example.com", rua: []string{"mailto:a%2Cb@example.com"}},
		{in: "v=TLSRPTv1", wantErr: "missing rua"},
		{in: "v=TLSRPTv1; ext=1", wantErr: "missing rua"},
		{in: "v=tlsrptv1; rua=mailto:a@b", wantErr: "must start with v=TLSRPTv1"},
		{in: "rua=mailto:a@b; v=TLSRPTv1", wantErr: "must start with v=TLSRPTv1"},
		{in: "v=TLSRPTv1; rua=mailto:a@b; rua=mailto:c@d", wantErr: "more than one rua"},
		{in: "v=TLSRPTv1; rua=", wantErr: "empty rua"},
		{in: "v=TLSRPTv1; rua=mailto:a@b,", wantErr: "empty rua"},
		{in: "v=TLSRPTv1; rua=http://r.example.net/", wantErr: "scheme must be mailto or https"},
		{in: "v=TLSRPTv1; rua=reports@example.com", wantErr: "scheme"},
		{in: "v=TLSRPTv1; rua=mailto:nobody", wantErr: "no mail address"},
		{in: "v=TLSRPTv1; rua=https:///path", wantErr: "no host"},
		{in: "v=TLSRPTv1; rua=mailto:a!b@c", wantErr: "\"!\""},
		{in: "v=TLSRPTv1; rua=mailto:a@b;; x=1", wantErr: "empty field"},
		{in: "v=TLSRPTv1; rua=mailto:a@b; x=a b", wantErr: "space"},
		{in: "v=TLSRPTv1; rua=mailto:a@b; v=TLSRPTv1", wantErr: "must come first"},
	}
	for _, tc := range tests {
		rec, err := ParseTLSRPTRecord(tc.in)
		if tc.wantErr != "" {
			if err == nil || !errors.Is(err, ErrTLSRPTSyntax) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseTLSRPTRecord(%q) = %+v, %v; want error with %q", tc.in, rec, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(rec.RUA, tc.rua) || rec.Version != "TLSRPTv1" {
			t.Errorf("ParseTLSRPTRecord(%q) = %+v, %v; want rua %q", tc.in, rec, err, tc.rua)
		}
	}
}

func TestReadReply(t *testing.T) {
	tests := []struct {
		in      string
		code    int
		lines   []string
		wantErr string
	}{
		{in: "220 mx ESMTP\r\n", code: 220, lines: []string{"mx ESMTP"}},
		{in: "220-a\r\n220-b\r\n220 c\r\n", code: 220, lines: []string{"a", "b", "c"}},
		{in: "250\r\n", code: 250, lines: []string{""}},
		{in: "250 ok\n", code: 250, lines: []string{"ok"}},
		{in: "250-a\r\n251 b\r\n", wantErr: "code 251 after 250"},
		{in: "25\r\n", wantErr: "malformed"},
		{in: "abc def\r\n", wantErr: "malformed"},
		{in: "099 x\r\n", wantErr: "malformed"},
		{in: "250_x\r\n", wantErr: "malformed"},
		{in: "250-a\r\n", wantErr: "EOF"},
		{in: "220 no newline", wantErr: "unexpected EOF"},
		{in: "", wantErr: "EOF"},
		{in: "220 " + strings.Repeat("x", maxReplyLine) + "\r\n", wantErr: "longer than"},
		{in: strings.Repeat("250-x\r\n", 200) + "250 x\r\n", wantErr: "more than 100 lines"},
	}
	for _, tc := range tests {
		code, lines, err := readReply(bufio.NewReaderSize(strings.NewReader(tc.in), maxReplyLine))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("readReply(%.40q) = %d %q %v; want error with %q", tc.in, code, lines, err, tc.wantErr)
			}
			continue
		}
		if err != nil || code != tc.code || !reflect.DeepEqual(lines, tc.lines) {
			t.Errorf("readReply(%.40q) = %d %q %v", tc.in, code, lines, err)
		}
	}
}
