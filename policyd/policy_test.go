package policyd

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePolicyValid(t *testing.T) {
	const fp1 = "3D:95:34:51:24:66:33:B9:D2:40:99:C0:C1:17:0B:D1"
	const fp2 = "EC:3C:2E:8A:4A:DA:9E:8B:48:03:7F:D7:22:48:92:BA"
	tests := []struct {
		in, want string
	}{
		{"may", "may"},
		{"  MAY\t", "may"},
		{"none", "none"},
		{"Dane-Only", "dane-only"},
		{"encrypt protocols=>=TLSv1.2", "encrypt protocols=>=TLSv1.2"},
		{"encrypt   protocols=>=tlsv1.2\tciphers=HIGH", "encrypt protocols=>=TLSv1.2 ciphers=high"},
		{"encrypt protocols=!SSLv2:!SSLv3", "encrypt protocols=!SSLv2:!SSLv3"},
		{"may protocols=>=TLSv1.2:<=TLSv1.3", "may protocols=>=TLSv1.2:<=TLSv1.3"},
		{"may protocols=<=TLSv1.3", "may protocols=<=TLSv1.3"},
		{"encrypt protocols=TLSv1.2:TLSv1.3", "encrypt protocols=TLSv1.2:TLSv1.3"},
		{"encrypt exclude=3DES:aNULL:eNULL", "encrypt exclude=3DES:aNULL:eNULL"},
		{"encrypt ciphers=medium exclude=RC4-SHA:kRSA", "encrypt ciphers=medium exclude=RC4-SHA:kRSA"},
		{"verify match=hostname:nexthop:dot-nexthop", "verify match=hostname:nexthop:dot-nexthop"},
		{"secure match=.Example.COM:example.com", "secure match=.example.com:example.com"},
		{"verify tafile=/etc/postfix/ta.pem match=mx.example.com", "verify tafile=/etc/postfix/ta.pem match=mx.example.com"},
		{"fingerprint match=" + fp1, "fingerprint match=" + fp1},
		{"may exclude=DEFAULT", "may exclude=DEFAULT"}, // not an alias after "!": no effect in OpenSSL
		{"may exclude=aRSA:aDSS", "may exclude=aRSA:aDSS"},
		{"encrypt exclude=AES:CAMELLIA:ARIA", "encrypt exclude=AES:CAMELLIA:ARIA"}, // CHACHA20 is left
		{"encrypt exclude=kRSA+AES:TLSv1.2", "encrypt exclude=kRSA+AES:TLSv1.2"},
		{"encrypt protocols=TLSv1.3", "encrypt protocols=TLSv1.3"},
		{"encrypt protocols=!TLSv1:!TLSv1.1:!TLSv1.2", "encrypt protocols=!TLSv1:!TLSv1.1:!TLSv1.2"},
		{"fingerprint match=" + strings.ToLower(fp1) + "|" + fp2, "fingerprint match=" + fp1 + "|" + fp2},
		{"fingerprint match=3d9534512466" + "33b9d24099c0c1170bd1", "fingerprint match=" + fp1},
		{"dane servername=hostname", "dane servername=hostname"},
		{"encrypt servername=MX.Example.com", "encrypt servername=mx.example.com"},
		{"may connection_reuse=YES enable_rpk=no", "may connection_reuse=yes enable_rpk=no"},
		{"encrypt CIPHERS=high", "encrypt ciphers=high"},
		// Attribute order is kept.
		{"encrypt ciphers=high protocols=>=TLSv1.2", "encrypt ciphers=high protocols=>=TLSv1.2"},
	}
	for _, tt := range tests {
		p, err := ParsePolicy(tt.in)
		if err != nil {
			t.Errorf("ParsePolicy(%q): %v", tt.in, err)
			continue
		}
		if got := p.String(); got != tt.want {
			t.Errorf("ParsePolicy(%q) = %q, want %q", tt.in, got, tt.want)
		}
		// The normal form is a fixed point.
		p2, err := ParsePolicy(p.String())
		if err != nil || p2.String() != p.String() {
			t.Errorf("reparse of %q: %q, %v", p.String(), p2.String(), err)
		}
	}
}

func TestParsePolicyInvalid(t *testing.T) {
	tests := []struct {
		in   string
		want string // substring of the error
	}{
		{"", "empty policy"},
		{"   ", "empty policy"},
		{"encrpyt", `unknown level "encrpyt" (want one of none, may, encrypt, dane, dane-only, fingerprint, verify, secure)`},
		{"protocols=TLSv1.2", "starts with attribute"},
		{"none protocols=TLSv1.2", "level none takes no attributes"},
		{"encrypt protocols", "not name=value"},
		{"encrypt =x", "unknown attribute"},
		{"encrypt foo=bar", `unknown attribute "foo"`},
		{"encrypt protocols=", "empty value"},
		{"encrypt protocols=TLSv1.2 protocols=TLSv1.3", "given twice"},
		{"verify match=a.example match=b.example", "given twice"},
		{"encrypt match=hostname", "not allowed with level encrypt"},
		{"may tafile=/etc/ta.pem", "not allowed with level may"},
		{"fingerprint tafile=/etc/ta.pem", "not allowed with level fingerprint"},
		{"encrypt protocols=TLSv9", `unknown protocol "TLSv9"`},
		{"encrypt protocols=>=TLSv1.2:>=TLSv1.3", "two lower bounds"},
		{"encrypt protocols=<=TLSv1.2:<=TLSv1.3", "two upper bounds"},
		{"encrypt protocols=>=TLSv1.3:<=TLSv1.2", "above upper bound"},
		{"encrypt protocols=!SSLv2:SSLv2", "twice"},
		{"encrypt protocols=!SSLv2::!SSLv3", "empty list item"},
		{"encrypt protocols=!!SSLv2", "unknown protocol"},
		{"encrypt protocols==>TLSv1.2", "unknown protocol"},
		{"encrypt ciphers=strong", "unknown cipher grade"},
		{"encrypt exclude=RC4:", "empty list item"},
		{"encrypt exclude=RC4;ls", "not allowed"},
		{"encrypt exclude=A=B", "not allowed"},
		{"verify match=hostname::nexthop", "empty list item"},
		{"verify match=-bad.example", "hyphen"},
		{"verify match=exa$mple.com", "not a keyword or domain name"},
		{"fingerprint match=hostname", "not hexadecimal"},
		{"fingerprint match=AB:CD", "16 to 64"},
		{"fingerprint match=ABC:DE:F0", "hex pairs"},
		{"fingerprint match=3D:95:34:51:24:66:33:B9:D2:40:99:C0:C1:17:0B:D1|", "empty fingerprint"},
		{"encrypt servername=bad_host!", "servername"},
		{"encrypt servername=-x.example", "hyphen"},
		{"verify tafile=etc/ta.pem", "not an absolute path"},
		{"verify tafile=/etc/", "directory"},
		{"may connection_reuse=maybe", "want yes or no"},
		{"may enable_rpk=1", "want yes or no"},
		// What Postfix's TLS library refuses, or what means plaintext
		// (checked against the installed Postfix by e2e TestGrammarAgainstPostfix).
		{"encrypt exclude=!aNULL", "unary"},
		{"encrypt exclude=aNULL:+RC4", "unary"},
		{"encrypt exclude=-RC4", "unary"},
		{"may exclude=@STRENGTH", "unary"},
		{"encrypt ciphers=null", "NULL ciphers do not encrypt"},
		{"verify ciphers=NULL match=nexthop", "NULL ciphers do not encrypt"},
		{"may ciphers=null", "NULL ciphers do not encrypt"},
		{"encrypt protocols=!SSLv2:!SSLv3:!TLSv1:!TLSv1.1:!TLSv1.2:!TLSv1.3", "enables none"},
		{"may protocols=SSLv3", "enables none"},
		{"encrypt protocols=SSLv2:SSLv3", "enables none"},
		{"encrypt protocols=TLSv1.2:!TLSv1.2", "twice"},
		{"encrypt protocols=TLSv1:>=TLSv1.2", "enables none"},
		{"encrypt protocols=!TLSv1.2:!TLSv1.3:<=TLSv1.1:>=TLSv1.2", "lower bound"},
		{"may protocols=!TLSv1.2:!TLSv1.3:>=TLSv1.2", "enables none"},
		{"fingerprint", "needs match="},
		{"fingerprint servername=hostname", "needs match="},
		{"may exclude=ALL", "rules out every cipher"},
		{"encrypt exclude=HIGH", "rules out every cipher"},
		{"encrypt exclude=aRSA:aECDSA:aDSS", "rules out every cipher"},
		{"encrypt exclude=kRSA:kDHE:kECDHE", "rules out every cipher"},
		{"may exclude=AES:CHACHA20:CAMELLIA:ARIA", "rules out every cipher"},
		{"may exclude=SSLv3:TLSv1:TLSv1.2", "rules out every cipher"},
		// Smuggling: Postfix splits on commas and groups braces.
		{"encrypt,protocols=TLSv1", "comma"},
		{"encrypt protocols=TLSv1.2,ciphers=null", "comma"},
		{"encrypt { protocols = TLSv1 }", "brace"},
		{"verify tafile=/etc/{x", "brace"},
		{"encrypt\nprotocols=TLSv1", "line break"},
		{"encrypt protocols=TLSv1.2\r", "line break"},
		{"encrypt\x00", "control character"},
		{"encrypt\x1b[31m", "control character"},
		{"encrypt\x7f", "control character"},
		{"encrypt servername=bücher.example", "non-ASCII"},
		{"may" + strings.Repeat(" ", 2100), "bytes long"},
	}
	for _, tt := range tests {
		_, err := ParsePolicy(tt.in)
		if err == nil {
			t.Errorf("ParsePolicy(%q) succeeded, want error containing %q", tt.in, tt.want)
			continue
		}
		if !errors.Is(err, ErrBadPolicy) {
			t.Errorf("ParsePolicy(%q) error %v does not wrap ErrBadPolicy", tt.in, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, tt.want) {
			t.Errorf("ParsePolicy(%q) = %q, want it to contain %q", tt.in, msg, tt.want)
		}
		if strings.ContainsAny(msg, "\n\r") {
			t.Errorf("ParsePolicy(%q) error is not one line: %q", tt.in, msg)
		}
		if !strings.HasPrefix(msg, "policyd: invalid policy: ") {
			t.Errorf("ParsePolicy(%q) error %q lacks the package prefix", tt.in, msg)
		}
	}
}

func TestParsePolicyFields(t *testing.T) {
	tests := []struct {
		in   []string
		want string
		err  bool
	}{
		{[]string{"encrypt", "protocols=>=TLSv1.2"}, "encrypt protocols=>=TLSv1.2", false},
		{[]string{"encrypt protocols=>=TLSv1.2", "ciphers=high"}, "encrypt protocols=>=TLSv1.2 ciphers=high", false},
		{[]string{"VERIFY", "", "match=hostname"}, "verify match=hostname", false},
		{nil, "", true},
		{[]string{"encrypt", "protocols=TLSv1.2,ciphers=null"}, "", true},
		{[]string{"encrypt", "protocols=TLSv1.2\nciphers=null"}, "", true},
	}
	for _, tt := range tests {
		p, err := ParsePolicyFields(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("ParsePolicyFields(%q) error = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if err == nil && p.String() != tt.want {
			t.Errorf("ParsePolicyFields(%q) = %q, want %q", tt.in, p.String(), tt.want)
		}
	}
}

func TestPolicyStructure(t *testing.T) {
	p, err := ParsePolicy("Verify match=hostname:nexthop TAFILE=/etc/ta.pem")
	if err != nil {
		t.Fatal(err)
	}
	want := Policy{Level: "verify", Attrs: []Attr{{"match", "hostname:nexthop"}, {"tafile", "/etc/ta.pem"}}}
	if p.Level != want.Level || len(p.Attrs) != 2 || p.Attrs[0] != want.Attrs[0] || p.Attrs[1] != want.Attrs[1] {
		t.Errorf("got %+v, want %+v", p, want)
	}
}
