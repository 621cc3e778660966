package mtasts

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/policyd"
)

func TestParseRecord(t *testing.T) {
	tests := []struct {
		in      string
		id      string
		ext     []Extension
		wantErr string // substring; "" = valid
	}{
		{in: "v=STSv1; id=20160831085700Z;", id: "20160831085700Z"},
		{in: "v=STSv1;id=abc", id: "abc"},
		{in: "v=STSv1 ;\tid=abc ; ", id: "abc"},
		{in: "v=STSv1; id=" + strings.Repeat("a", 32), id: strings.Repeat("a", 32)},
		{in: "v=STSv1; id=1; foo=bar; x.y-z_1=!~", id: "1", ext: []Extension{{"foo", "bar"}, {"x.y-z_1", "!~"}}},
		{in: "v=STSv1; foo=bar; id=9", id: "9", ext: []Extension{{"foo", "bar"}}},
		{in: "", wantErr: "must start with v=STSv1"},
		{in: "v=STSv1", wantErr: "missing id"},
		{in: "v=STSv1;", wantErr: "missing id"},
		{in: "v=stsv1; id=1", wantErr: "must start with v=STSv1"},
		{in: "V=STSv1; id=1", wantErr: "must start with v=STSv1"},
		{in: "v=STSv2; id=1", wantErr: "must start with v=STSv1"},
		{in: "id=1; v=STSv1", wantErr: "must start with v=STSv1"},
		{in: "v=STSv1 id=1", wantErr: "must start with v=STSv1"},
		{in: "v=STSv1; id=", wantErr: "1 to 32 letters"},
		{in: "v=STSv1; id=" + strings.Repeat("a", 33), wantErr: "1 to 32 letters"},
		{in: "v=STSv1; id=a-b", wantErr: "1 to 32 letters"},
		{in: "v=STSv1; id=é", wantErr: "1 to 32 letters"},
		{in: "v=STSv1; id=1; id=2", wantErr: "more than one id"},
		{in: "v=STSv1;; id=1", wantErr: "empty field"},
		{in: "v=STSv1; id=1;;", wantErr: "empty field"},
		{in: "; v=STSv1; id=1", wantErr: "must start with v=STSv1"},
		{in: "v=STSv1; id=1; v=STSv1", wantErr: "must come first"},
		{in: "v=STSv1; id=1; foo", wantErr: "not key=value"},
		{in: "v=STSv1; id=1; _foo=1", wantErr: "not key=value"},
		{in: "v=STSv1; id=1; foo=a b", wantErr: "space"},
		{in: "v=STSv1; id=1; foo=a=b", wantErr: "space, \"=\""},
		{in: "v=STSv1; id=1; foo=", wantErr: "space"},
		{in: "v=STSv1; id=1; foo=\x01", wantErr: "non-printable"},
	}
	for _, tc := range tests {
		rec, err := ParseRecord(tc.in)
		if tc.wantErr != "" {
			if err == nil || !errors.Is(err, ErrRecordSyntax) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseRecord(%q) = %+v, %v; want error with %q", tc.in, rec, err, tc.wantErr)
			}
			continue
		}
		if err != nil || rec.ID != tc.id || rec.Version != "STSv1" || !reflect.DeepEqual(rec.Extensions, tc.ext) {
			t.Errorf("ParseRecord(%q) = %+v, %v; want id %q ext %v", tc.in, rec, err, tc.id, tc.ext)
		}
	}
}

func TestSelectRecord(t *testing.T) {
	tests := []struct {
		txts    []string
		want    string
		wantErr bool
	}{
		{nil, "", false},
		{[]string{"google-site-verification=x", "v=spf1 -all"}, "", false},
		{[]string{"spf", "v=STSv1; id=1"}, "v=STSv1; id=1", false},
		{[]string{"v=STSv1; id=1", "v=STSv1; id=2"}, "v=STSv1; id=1", true},
	}
	for _, tc := range tests {
		got, err := SelectRecord(tc.txts, "v=STSv1")
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("SelectRecord(%q) = %q, %v", tc.txts, got, err)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	good := &Policy{Version: "STSv1", Mode: ModeEnforce, MX: []string{"mail.example.com", "*.example.net"}, MaxAge: 604800}
	tests := []struct {
		name    string
		in      string
		want    *Policy
		wantErr string
	}{
		{"RFC example CRLF", "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n", good, ""},
		{"LF, no final newline", "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 604800", good, ""},
		{"any order, spaces", "max_age:604800 \nmx:\tmail.example.com\nmode:  enforce\t\nmx: *.EXAMPLE.net\nversion: STSv1\n", good, ""},
		{"unknown keys ignored", "version: STSv1\nfoo: bar baz\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nx-y.z_1: ü\nmax_age: 604800\n",
			&Policy{Version: "STSv1", Mode: ModeEnforce, MX: good.MX, MaxAge: 604800, Extensions: []Extension{{"foo", "bar baz"}, {"x-y.z_1", "ü"}}}, ""},
		{"mode none without mx", "version: STSv1\nmode: none\nmax_age: 0\n", &Policy{Version: "STSv1", Mode: ModeNone, MaxAge: 0}, ""},
		{"testing", "version: STSv1\nmode: testing\nmx: a.b\nmax_age: 31557600\n", &Policy{Version: "STSv1", Mode: ModeTesting, MX: []string{"a.b"}, MaxAge: 31557600}, ""},
		{"duplicate mode: first wins", "version: STSv1\nmode: testing\nmode: enforce\nmx: a.b\nmax_age: 1\n", &Policy{Version: "STSv1", Mode: ModeTesting, MX: []string{"a.b"}, MaxAge: 1}, ""},
		{"leading zeros", "version: STSv1\nmode: none\nmax_age: 0000000001\n", &Policy{Version: "STSv1", Mode: ModeNone, MaxAge: 1}, ""},

		{"empty", "", nil, "empty"},
		{"blank line", "version: STSv1\n\nmode: enforce\nmx: a.b\nmax_age: 1\n", nil, "line 2: empty line"},
		{"two trailing newlines", "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 1\n\n", nil, "empty line"},
		{"bare CR", "version: STSv1\rmode: enforce\nmx: a.b\nmax_age: 1\n", nil, "version"},
		{"no version", "mode: enforce\nmx: a.b\nmax_age: 1\n", nil, "missing version"},
		{"bad version", "version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n", nil, "want STSv1"},
		{"version case", "Version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 1\n", nil, "missing version"},
		{"no mode", "version: STSv1\nmx: a.b\nmax_age: 1\n", nil, "missing mode"},
		{"bad mode", "version: STSv1\nmode: Enforce\nmx: a.b\nmax_age: 1\n", nil, "want enforce, testing or none"},
		{"bad duplicate mode", "version: STSv1\nmode: enforce\nmode: bogus\nmx: a.b\nmax_age: 1\n", nil, "mode \"bogus\""},
		{"no max_age", "version: STSv1\nmode: enforce\nmx: a.b\n", nil, "missing max_age"},
		{"max_age too big", "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 31557601\n", nil, "larger than 31557600"},
		{"max_age 11 digits", "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 00000000001\n", nil, "1 to 10 digits"},
		{"max_age negative", "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n", nil, "digits"},
		{"max_age empty", "version: STSv1\nmode: enforce\nmx: a.b\nmax_age:\n", nil, "digits"},
		{"no mx in enforce", "version: STSv1\nmode: enforce\nmax_age: 1\n", nil, "missing mx"},
		{"wildcard inside", "version: STSv1\nmode: enforce\nmx: a.*.b\nmax_age: 1\n", nil, "mx \"a.*.b\""},
		{"bare wildcard", "version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n", nil, "mx \"*\""},
		{"double wildcard", "version: STSv1\nmode: enforce\nmx: *.*.b\nmax_age: 1\n", nil, "mx"},
		{"trailing dot", "version: STSv1\nmode: enforce\nmx: a.b.\nmax_age: 1\n", nil, "empty label"},
		{"U-label", "version: STSv1\nmode: enforce\nmx: bücher.example\nmax_age: 1\n", nil, "A-label form"},
		{"mx with space", "version: STSv1\nmode: enforce\nmx: a.b c.d\nmax_age: 1\n", nil, "mx"},
		{"hyphen label", "version: STSv1\nmode: enforce\nmx: -a.b\nmax_age: 1\n", nil, "starts or ends"},
		{"no colon", "version STSv1\nmode: enforce\nmx: a.b\nmax_age: 1\n", nil, "not key: value"},
		{"bad key", "version: STSv1\n_x: 1\nmode: enforce\nmx: a.b\nmax_age: 1\n", nil, "invalid key"},
		{"empty ext value", "version: STSv1\nx: \nmode: enforce\nmx: a.b\nmax_age: 1\n", nil, "value of x"},
		{"control in ext", "version: STSv1\nx: a\x00b\nmode: enforce\nmx: a.b\nmax_age: 1\n", nil, "value of x"},
		{"too large", "version: STSv1\n" + strings.Repeat("x: y\n", MaxPolicySize/5+1), nil, "larger than"},
	}
	for _, tc := range tests {
		p, err := ParsePolicy(tc.in)
		if tc.wantErr != "" {
			if err == nil || !errors.Is(err, ErrPolicySyntax) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: ParsePolicy = %+v, %v; want error with %q", tc.name, p, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(p, tc.want) {
			t.Errorf("%s: ParsePolicy = %+v, %v; want %+v", tc.name, p, err, tc.want)
		}
	}
}

func TestPolicyMatchMX(t *testing.T) {
	p := &Policy{MX: []string{"mail.example.com", "*.example.net"}}
	tests := []struct {
		host string
		want bool
	}{
		{"mail.example.com", true},
		{"MAIL.Example.COM.", true},
		{"mx.example.net", true},
		{"a.b.example.net", false}, // one label only (RFC 8461 §4.1)
		{"example.net", false},
		{".example.net", false},
		{"mail.example.org", false},
		{"xmail.example.com", false},
	}
	for _, tc := range tests {
		if got := p.MatchMX(tc.host); got != tc.want {
			t.Errorf("MatchMX(%q) = %v", tc.host, got)
		}
	}
	if got := (&Policy{MX: []string{"*.example.net", "a.example.com", "*.example.net", "b.example.com"}}).PostfixMatch(); got != ".example.net:a.example.com:b.example.com" {
		t.Errorf("PostfixMatch = %q", got)
	}
}

// TestPostfixPolicy: enforce renders the secure answer that policyd
// accepts unchanged; testing and none render nothing (the default).
func TestPostfixPolicy(t *testing.T) {
	tests := []struct {
		p    *Policy
		want string
	}{
		{&Policy{Mode: ModeEnforce, MX: []string{"mail.example.com", "*.example.net"}},
			"secure match=mail.example.com:.example.net servername=hostname"},
		{&Policy{Mode: ModeEnforce, MX: []string{"*.example.net", "*.example.net"}},
			"secure match=.example.net servername=hostname"},
		{&Policy{Mode: ModeTesting, MX: []string{"mail.example.com"}}, ""},
		{&Policy{Mode: ModeNone}, ""},
		{nil, ""},
	}
	for _, tc := range tests {
		got := tc.p.PostfixPolicy()
		if got != tc.want {
			t.Errorf("PostfixPolicy(%+v) = %q, want %q", tc.p, got, tc.want)
			continue
		}
		if got == "" {
			continue
		}
		pp, err := policyd.ParsePolicy(got)
		if err != nil || pp.String() != got {
			t.Errorf("policyd.ParsePolicy(%q) = %q, %v; want it unchanged", got, pp.String(), err)
		}
	}
}

// TestMXPatternHostnames: the host name rule is policyd's, so every
// accepted pattern is a name Postfix's match= takes.
func TestMXPatternHostnames(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "MX1.Example.COM", want: "mx1.example.com"},
		{in: "*.example.net", want: "*.example.net"},
		{in: "mx_1.example.net", want: "mx_1.example.net"}, // Postfix valid_hostname takes "_"
		{in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{in: "mx.example.123", wantErr: "all digits"},
		{in: "xn--zz.example", wantErr: "punycode"},
		{in: "mx.example.com:25", wantErr: "character ':'"},
		{in: "[mx.example.com]", wantErr: "character '['"},
		{in: ".example.com", wantErr: "empty label"},
		{in: "a..b", wantErr: "empty label"},
		{in: "*", wantErr: "wildcard"},
		{in: strings.Repeat("a", 64) + ".example", wantErr: "63"},
	}
	for _, tc := range tests {
		got, err := parseMXPattern(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "policyd:") || strings.Contains(err.Error(), "key") {
				t.Errorf("parseMXPattern(%q) = %q, %v; want an error with %q that does not talk about keys", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseMXPattern(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestPolicyString: the stored form reads back to the same policy.
func TestPolicyString(t *testing.T) {
	in := "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nfoo: bar baz\nmax_age: 604800\n"
	p, err := ParsePolicy(in)
	if err != nil {
		t.Fatal(err)
	}
	q, err := ParsePolicy(p.String())
	if err != nil || !reflect.DeepEqual(p, q) {
		t.Errorf("round trip: %+v, %v; want %+v", q, err, p)
	}
}
