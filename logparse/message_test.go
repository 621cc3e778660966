package logparse

import (
	"strings"
	"testing"

	"github.com/mailtls/mailtls/delivery"
)

func TestIsClientTag(t *testing.T) {
	for tag, want := range map[string]bool{
		"postfix/smtp":                   true,
		"postfix-out/smtp":               true,
		"postfix/relay/smtp":             true,
		"postfix-mx/content-filter/smtp": true,
		"postfix/lmtp":                   true,
		"postfix/smtpd":                  false,
		"postfix/tlsproxy":               false,
		"postfix/local":                  false,
		"postfix/virtual":                false,
		"postfix/pipe":                   false,
		"postfix/discard":                false,
		"postfix/qmgr":                   false,
		"postfix/smtps/smtpd":            false,
		"smtp":                           false,
		"postfix/xsmtp":                  false,
		"/smtp":                          false,
		"":                               false,
	} {
		if got := isClientTag([]byte(tag)); got != want {
			t.Errorf("isClientTag(%q) = %v, want %v", tag, got, want)
		}
	}
}

func TestParseTLSLine(t *testing.T) {
	tests := []struct {
		msg                  string
		ok                   bool
		trust                delivery.Trust
		reused               bool
		relay, proto, cipher string
	}{
		{"Untrusted TLS connection established to tls.test[127.0.0.2]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256",
			true, delivery.Untrusted, false, "tls.test[127.0.0.2]:25", "TLSv1.3", "TLS_AES_256_GCM_SHA384"},
		{"Verified TLS connection reused to mx.example[192.0.2.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
			true, delivery.Verified, true, "mx.example[192.0.2.1]:25", "TLSv1.3", "TLS_AES_256_GCM_SHA384"},
		{"Trusted TLS connection established to gmail-smtp-in.l.google.com[74.125.128.27]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA (P-256) server-digest SHA256",
			true, delivery.Trusted, false, "gmail-smtp-in.l.google.com[74.125.128.27]:25", "TLSv1.3", "TLS_AES_256_GCM_SHA384"},
		{"Anonymous TLS connection established to mx[2001:db8::1]:25: TLSv1.2 with cipher ADH-AES256-GCM-SHA384 (256/256 bits)",
			true, delivery.Anonymous, false, "mx[2001:db8::1]:25", "TLSv1.2", "ADH-AES256-GCM-SHA384"},
		{"Untrusted TLS connection established to [2001:db8::99]:2525: TLSv1.3 with cipher TLS_CHACHA20_POLY1305_SHA256 (256/256 bits)",
			true, delivery.Untrusted, false, "[2001:db8::99]:2525", "TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256"},
		// Server side and malformed lines.
		{"Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", false, "", false, "", "", ""},
		{"Untrusted TLS connection established to tls.test[127.0.0.2]:25: TLSv1.3", false, "", false, "", "", ""},
		{"Untrusted TLS connection established to tls.test[127.0.0.2:25: TLSv1.3 with cipher X (1/1 bits)", false, "", false, "", "", ""},
		{"Bogus TLS connection established to tls.test[127.0.0.2]:25: TLSv1.3 with cipher X (1/1 bits)", false, "", false, "", "", ""},
		{"Untrusted TLS connection established to tls.test[127.0.0.2]:25: TLSv1.3 with cipher  (1/1 bits)", false, "", false, "", "", ""},
	}
	for _, tt := range tests {
		got, ok := parseTLSLine([]byte(tt.msg))
		if ok != tt.ok {
			t.Errorf("%q: ok = %v", tt.msg, ok)
			continue
		}
		if !ok {
			continue
		}
		if got.trust != tt.trust || got.reused != tt.reused || string(got.relay) != tt.relay || string(got.proto) != tt.proto || string(got.cipher) != tt.cipher {
			t.Errorf("%q:\n got %s %v %s %s %s\nwant %s %v %s %s %s", tt.msg, got.trust, got.reused, got.relay, got.proto, got.cipher,
				tt.trust, tt.reused, tt.relay, tt.proto, tt.cipher)
		}
	}
}

func TestParseRelayLines(t *testing.T) {
	tests := []struct {
		msg   string
		parse func([]byte) ([]byte, bool)
		relay string
		ok    bool
	}{
		{"SSL_connect error to tlsv1.test[127.0.0.4]:25: -1", parseHandshakeError, "tlsv1.test[127.0.0.4]:25", true},
		{"SSL_connect error to mx[2001:db8::1]:25: Connection reset by peer", parseHandshakeError, "mx[2001:db8::1]:25", true},
		{"SSL_connect error to mx[192.0.2.1]:25:", parseHandshakeError, "mx[192.0.2.1]:25", true},
		{"SSL_connect:error in SSLv3/TLS write client hello", parseHandshakeError, "", false},
		{"connect to mx.down.example[192.0.2.10]:25: Connection refused", parseConnectError, "mx.down.example[192.0.2.10]:25", true},
		{"connect to mx[2001:db8::26]:25: Network is unreachable", parseConnectError, "mx[2001:db8::26]:25", true},
		{"connect to nowhere", parseConnectError, "", false},
	}
	for _, tt := range tests {
		relay, ok := tt.parse([]byte(tt.msg))
		if ok != tt.ok || string(relay) != tt.relay {
			t.Errorf("%q: got %q %v, want %q %v", tt.msg, relay, ok, tt.relay, tt.ok)
		}
	}
}

func TestParseVerifyFailure(t *testing.T) {
	tests := []struct {
		msg, relay, why string
		ok              bool
	}{
		{"server certificate verification failed for mismatch.test[127.0.0.5]:25: num=62:hostname mismatch", "mismatch.test[127.0.0.5]:25", "num=62:hostname mismatch", true},
		{"certificate verification failed for selfsigned.test[127.0.0.10]:25: self-signed certificate", "selfsigned.test[127.0.0.10]:25", "self-signed certificate", true},
		{"CA certificate verification failed for mx[2001:db8::1]:25: certificate has expired", "mx[2001:db8::1]:25", "certificate has expired", true},
		{"server certificate verification failed for mx[192.0.2.1]:25:", "", "", false},
		{"server certificate verification failed", "", "", false},
		{"certificate verification failed for a b[192.0.2.1]:25: x", "", "", false},
	}
	for _, tt := range tests {
		relay, why, ok := parseVerifyFailure([]byte(tt.msg))
		if ok != tt.ok || string(relay) != tt.relay || string(why) != tt.why {
			t.Errorf("%q: got %q %q %v, want %q %q %v", tt.msg, relay, why, ok, tt.relay, tt.why, tt.ok)
		}
	}
}

// TestParseTLSRPTStatus: the forms of Postfix 3.10's tlsrpt_wrapper.c
// (msg_info "TLSRPT: status=success, domain=%s, receiving_mx=%s[%s]" and
// "TLSRPT: status=failure, domain=%s, receiving_mx=%s[%s], failure_type=%s"
// with ", failure_reason=%s" when given; the failure names of
// trw_failure_type_to_string), and what is refused.
func TestParseTLSRPTStatus(t *testing.T) {
	tests := []struct {
		in   string
		want TLSRPTStatus
		ok   bool
	}{
		{"status=success, domain=example.com, receiving_mx=mail.example.com[192.0.2.1]",
			TLSRPTStatus{Success: true, Domain: "example.com", MX: "mail.example.com[192.0.2.1]"}, true},
		{"status=failure, domain=example.org, receiving_mx=mail.example.org[192.0.2.2], failure_type=starttls_not_supported",
			TLSRPTStatus{Domain: "example.org", MX: "mail.example.org[192.0.2.2]", FailureType: "starttls-not-supported"}, true},
		{"status=failure, domain=example.net, receiving_mx=mail.example.net[2001:db8::3], failure_type=validation_failure, failure_reason=self-signed_certificate",
			TLSRPTStatus{Domain: "example.net", MX: "mail.example.net[2001:db8::3]", FailureType: "validation-failure", FailureReason: "self-signed_certificate"}, true},
		{"status=failure, domain=example.net, receiving_mx=mx[192.0.2.3], failure_type=unfinished_policY",
			TLSRPTStatus{Domain: "example.net", MX: "mx[192.0.2.3]", FailureType: "unfinished-policy"}, true},
		{"status=failure, domain=example.net, receiving_mx=mx[192.0.2.3]", TLSRPTStatus{}, false},
		{"status=success, domain=example.com, receiving_mx=mail.example.com", TLSRPTStatus{}, false},
		{"status=success, domain=example.com, receiving_mx=[192.0.2.1]", TLSRPTStatus{}, false},
		{"status=success, domain=example.com, receiving_mx=mx[192.0.2.1], x=y", TLSRPTStatus{}, false},
		{"status=maybe, domain=example.com, receiving_mx=mx[192.0.2.1]", TLSRPTStatus{}, false},
		{"status=failure, domain=example.com, receiving_mx=mx[192.0.2.1], failure_type=bad type", TLSRPTStatus{}, false},
		{"status=failure, domain=example.com, receiving_mx=mx[192.0.2.1], failure_type=x, reason=y", TLSRPTStatus{}, false},
		{"domain=example.com, status=success, receiving_mx=mx[192.0.2.1]", TLSRPTStatus{}, false},
		{"", TLSRPTStatus{}, false},
	}
	for _, tt := range tests {
		got, err := ParseTLSRPTStatus(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseTLSRPTStatus(%q) = %+v, %v; want %+v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && (strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "want")) {
			t.Errorf("error %q: want one line saying what is accepted", err)
		}
	}
}

// FuzzParseTLSRPTStatus: never a panic; what parses is what the fields
// say, and has the shape the correlator keeps.
func FuzzParseTLSRPTStatus(f *testing.F) {
	for _, s := range []string{
		"status=success, domain=example.com, receiving_mx=mail.example.com[192.0.2.1]",
		"status=failure, domain=example.org, receiving_mx=mail.example.org[192.0.2.2], failure_type=starttls_not_supported",
		"status=failure, domain=example.net, receiving_mx=mail.example.net[ipaddr], failure_type=validation_failure, failure_reason=self-signed_certificate",
		"status=failure, domain=d, receiving_mx=(null)[(null)], failure_type=failure_type_7",
		"status=failure, domain=d, receiving_mx=h[a], failure_type=x, failure_reason=a, b, c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		st, err := ParseTLSRPTStatus(s)
		if err != nil {
			if st != (TLSRPTStatus{}) {
				t.Fatalf("error %v with a value %+v", err, st)
			}
			return
		}
		if !strings.Contains(s, "domain="+st.Domain+", receiving_mx="+st.MX) || !stateSafe(st.MX, maxRelayLen) || !stateSafe(st.Domain, 255) {
			t.Fatalf("%q: %+v", s, st)
		}
		if st.Success != (st.FailureType == "") || st.Success && st.FailureReason != "" {
			t.Fatalf("%q: %+v", s, st)
		}
		for _, c := range st.FailureType {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				t.Fatalf("%q: failure type %q", s, st.FailureType)
			}
		}
	})
}

func TestParseDelivery(t *testing.T) {
	tests := []struct {
		msg                                   string
		ok                                    bool
		qid, rcpt, origTo, relay, dsn, status string
		reason, tls                           string
	}{
		{"3F2A81C0D2: to=<alice@tls.test>, relay=tls.test[127.0.0.2]:25, delay=0.31, delays=0.05/0.02/0.17/0.07, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 5B1C31C0D5)",
			true, "3F2A81C0D2", "alice@tls.test", "", "tls.test[127.0.0.2]:25", "2.0.0", "sent", "250 2.0.0 Ok: queued as 5B1C31C0D5", ""},
		{"A1B2C3D4E5: to=<cid@r.example>, orig_to=<cid.alias@s.example>, relay=mx[203.0.113.25]:25, conn_use=2, delay=1.6, delays=0.02/0.01/0.71/0.86, dsn=5.1.1, status=bounced (host mx[203.0.113.25] said: 550 5.1.1 <cid@r.example>: unknown (in reply to RCPT TO command))",
			true, "A1B2C3D4E5", "cid@r.example", "cid.alias@s.example", "mx[203.0.113.25]:25", "5.1.1", "bounced", "host mx[203.0.113.25] said: 550 5.1.1 <cid@r.example>: unknown (in reply to RCPT TO command)", ""},
		{"01E12901F9D: to=<postfix-users@postfix.org>, relay=list.sys4.de[45.90.5.195]:25, delay=5.4, delays=0.08/0.01/3.5/1.9, tls=dane, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4cbdb56t4MzPjfw)",
			true, "01E12901F9D", "postfix-users@postfix.org", "", "list.sys4.de[45.90.5.195]:25", "2.0.0", "sent", "250 2.0.0 Ok: queued as 4cbdb56t4MzPjfw", "dane"},
		// Field order differs, status without reason, odd local part.
		{"4cbdb56t4MzPjfw: to=<\"a>, b\"@x.example>, dsn=4.4.1, relay=none, status=deferred",
			true, "4cbdb56t4MzPjfw", "\"a>, b\"@x.example", "", "none", "4.4.1", "deferred", "", ""},
		{"BC23DE45F0: to=<erin@down.example>, relay=none, delay=30, delays=0.01/0.01/30/0, dsn=4.4.1, status=deferred (connect to mx2.down.example[192.0.2.11]:25: Connection timed out)",
			true, "BC23DE45F0", "erin@down.example", "", "none", "4.4.1", "deferred", "connect to mx2.down.example[192.0.2.11]:25: Connection timed out", ""},
		// Truncated reason keeps what is there.
		{"BC23DE45F0: to=<e@d.example>, relay=none, dsn=4.4.1, status=deferred (connect to mx2",
			true, "BC23DE45F0", "e@d.example", "", "none", "4.4.1", "deferred", "connect to mx2", ""},
		{"8000000002: to=<t@trunc.example>, relay=mx.tr", false, "", "", "", "", "", "", "", ""},
		{"NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1", false, "", "", "", "", "", "", "", ""},
		{"3F2A81C0D2: removed", false, "", "", "", "", "", "", "", ""},
		{"3F2A81C0D2: to=alice@tls.test, relay=x, status=sent", false, "", "", "", "", "", "", "", ""},
		{"3F2A: to=<a@b>, relay=x, status=sent", false, "", "", "", "", "", "", "", ""},
		{"3F2A81C0D2: to=<a@b>,relay=x, status=sent", false, "", "", "", "", "", "", "", ""},
	}
	for _, tt := range tests {
		d, ok := parseDelivery([]byte(tt.msg))
		if ok != tt.ok {
			t.Errorf("%q: ok = %v", tt.msg, ok)
			continue
		}
		if !ok {
			continue
		}
		got := []string{string(d.qid), string(d.rcpt), string(d.origTo), string(d.relay), string(d.dsn), string(d.status), string(d.reason), string(d.tls)}
		want := []string{tt.qid, tt.rcpt, tt.origTo, tt.relay, tt.dsn, tt.status, tt.reason, tt.tls}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%q: field %d = %q, want %q", tt.msg, i, got[i], want[i])
			}
		}
	}
}

func TestParseTLSFeature(t *testing.T) {
	tests := []struct {
		in                   string
		present              bool
		target, final        string
		violation, undecided bool
	}{
		{"dane", true, "dane", "dane", false, false},
		{"dane:may", true, "dane", "may", false, false},
		{"may:none", true, "may", "none", false, false},
		{"dane:halfdane", true, "dane", "", false, false},
		{"(dane:encrypt)", true, "dane", "encrypt", false, false},
		{"!verify", true, "verify", "verify", true, false},
		{"verify!", true, "verify", "verify", true, false},
		{"encrypt?", true, "encrypt", "encrypt", false, true},
		{"secure/requiretls", true, "secure", "secure", false, false},
		{"requiretls/may", true, "may", "may", false, false},
		{"may/!requiretls", true, "may", "may", false, false},
		{"disabled:requiretls", false, "", "", false, false},
		{"bogus", false, "", "", false, false},
		{"", false, "", "", false, false},
	}
	for _, tt := range tests {
		f := parseTLSFeature([]byte(tt.in))
		if f.present != tt.present || f.target != tt.target || f.final != tt.final || f.violation != tt.violation || f.undecided != tt.undecided {
			t.Errorf("parseTLSFeature(%q) = %+v", tt.in, f)
		}
	}
}

func TestReasons(t *testing.T) {
	for reason, want := range map[string][2]bool{ // {mentionsTLS, noTLS}
		"Cannot start TLS: handshake failure":                                            {true, true},
		"TLS is required, but was not offered by host plain.test[127.0.0.3]":             {true, true},
		"TLS is required, but host enc.test[127.0.0.13] refused to start TLS: 454 4.7.0": {true, true},
		"Server certificate not verified":                                                {true, false},
		"host x said: 530 5.7.0 Must issue a STARTTLS command first":                     {true, false},
		"lost connection with mx[192.0.2.1] while performing the TLS handshake":          {true, false},
		"host x said: 550 5.7.1 Message rejected as spam":                                {false, false},
		"connect to mx[192.0.2.1]:25: Connection refused":                                {false, false},
	} {
		if got := [2]bool{reasonMentionsTLS([]byte(reason)), reasonNoTLS([]byte(reason))}; got != want {
			t.Errorf("%q: got %v, want %v", reason, got, want)
		}
	}
}

// The relay host is delivery.RelayHost (delivery_test.go).
func TestAddrDomain(t *testing.T) {
	for in, want := range map[string]string{
		"Ben@Recipient.Example": "recipient.example",
		"a@b@C.example":         "c.example",
		"root":                  "",
		"j@ÖRG.example":         "örg.example",
		`"a@b"`:                 "",
		`"a@b"@C.example`:       "c.example",
	} {
		addr, at, _, ok := cutAddr([]byte("<" + in + ">"))
		if got := addrDomain(toString(addr), addr, at); !ok || got != want {
			t.Errorf("addrDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTLSFeatureDecides: Postfix 3.11's tls= field is recorded as logged
// and, where it says so, decides TLS and Fallback (issue #14 item 3).
func TestTLSFeatureDecides(t *testing.T) {
	const pre = "Sep 30 23:06:00 amnesiac postfix/smtp[793150]: "
	rec := func(qid, feature, dsn, status string) string {
		return pre + qid + ": to=<a@x.example>, relay=mx.x.example[198.51.100.61]:25, delay=0.5, delays=0.01/0/0.3/0.19, tls=" + feature + ", dsn=" + dsn + ", status=" + status
	}
	tests := []struct {
		lines             []string
		tls               string // "true", "false" or "null"
		fallback, failure bool
	}{
		// Plaintext: a server that offers no STARTTLS logs this too, so
		// it is no fallback by itself...
		{[]string{rec("12F23A12FA1", "may:none", "2.0.0", "sent (250 ok)")}, "false", false, false},
		// ...but it is one after a failed handshake for the same message.
		{[]string{pre + "SSL_connect error to mx.x.example[198.51.100.61]:25: -1",
			rec("12F23A12FA7", "may:none", "2.0.0", "sent (250 ok)")}, "false", true, false},
		// A feature status that is not a level proves nothing.
		{[]string{rec("12F23A12FA2", "dane:halfdane", "2.0.0", "sent (250 ok)")}, "null", false, false},
		// Enforced and failed.
		{[]string{rec("12F23A12FA3", "!encrypt", "4.7.4", "deferred (TLS is required, but was not offered by host mx.x.example[198.51.100.61])")}, "false", false, true},
		// Not decided when logged.
		{[]string{rec("12F23A12FA4", "encrypt?", "2.0.0", "sent (250 ok)")}, "null", false, false},
		// The field wins over a handshake failure seen before: encrypt
		// was met, so this is no plaintext fallback.
		{[]string{pre + "SSL_connect error to mx.x.example[198.51.100.61]:25: -1",
			rec("12F23A12FA5", "encrypt", "2.0.0", "sent (250 ok)")}, "true", false, false},
		{[]string{pre + "SSL_connect error to mx.x.example[198.51.100.61]:25: -1",
			rec("12F23A12FA6", "may", "2.0.0", "sent (250 ok)")}, "false", true, false},
	}
	for _, tt := range tests {
		ds := feedStrings(NewCorrelator(goldenOptions("")), tt.lines...)
		if len(ds) != 1 {
			t.Fatalf("%q: %d deliveries", tt.lines, len(ds))
		}
		d := ds[0]
		want := tt.lines[len(tt.lines)-1]
		feature := want[strings.Index(want, "tls=")+4:]
		feature = feature[:strings.Index(feature, ",")]
		if got := tlsString(d.TLS); got != tt.tls || d.Fallback != tt.fallback || d.TLSFailure != tt.failure || d.TLSFeature != feature {
			t.Errorf("tls=%s: TLS %s fallback %v failure %v feature %q; want %s %v %v %q", feature, got, d.Fallback, d.TLSFailure, d.TLSFeature, tt.tls, tt.fallback, tt.failure, feature)
		}
	}
}
