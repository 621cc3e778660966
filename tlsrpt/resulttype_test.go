package tlsrpt

import (
	"crypto/x509"
	"errors"
	"fmt"
	"testing"

	"github.com/mailtls/mailtls/mtasts"
)

// TestClassifyGolden: one or more real Postfix lines per result type. The
// source of each is given: a file under logparse/testdata (real-postfix37*
// are captured from the e2e harness's Postfix 3.7.11:
// real-postfix37-tlsrpt.log by TestRealTLSRPT, real-postfix37-dane.log by
// TestRealDANE, whose Postfix resolves through a loopback DNS server that
// sets the AD bit), or a message format of
// Postfix 3.7.11 as built into the harness's binaries (strings
// /usr/lib/postfix/sbin/smtp and libpostfix-tls.so; the same texts in
// tls_verify.c of Postfix 3.7.11 to 3.12), filled in the way Postfix fills
// it. verify is the "certificate verification
// failed" line before the delivery record, reason the delivery record's
// text in parentheses.
func TestClassifyGolden(t *testing.T) {
	tests := []struct {
		source         string
		verify, reason string
		dane           bool
		want           ResultType
	}{
		{"logparse/testdata/real-postfix37-tlsrpt.log:20 (encrypt, no STARTTLS)", "",
			"TLS is required, but was not offered by host plain.test[127.0.1.3]", false, StartTLSNotSupported},
		{"logparse/testdata/tls-failures.log:4", "",
			"TLS is required, but was not offered by host plain.test[127.0.0.3]", false, StartTLSNotSupported},
		{"logparse/testdata/real-postfix37-hostile.log (postfix/error)", "",
			"delivery temporarily suspended: TLS is required, but was not offered by host enc.test[127.0.3.3]", false, StartTLSNotSupported},
		{"logparse/testdata/tls-failures.log:15", "",
			"TLS is required, but host enc.test[127.0.0.13] refused to start TLS: 454 4.7.0 TLS not available due to local problem", false, StartTLSNotSupported},
		{"logparse/testdata/real-postfix37.log:87,89 (verify, a name not in the certificate)",
			"server certificate verification failed for verify.test[127.0.1.2]:25: num=62:hostname mismatch",
			"Server certificate not verified", false, CertificateHostMismatch},
		{"logparse/testdata/real-postfix37-tlsrpt.log:17,22 (MTA-STS secure match=mx.nowhere.test)",
			"server certificate verification failed for mismatch.test[127.0.1.2]:25: num=62:hostname mismatch",
			"Server certificate not verified", false, CertificateHostMismatch},
		{"logparse/testdata/real-postfix37-tlsrpt.log:46,48 (verify, expired certificate)",
			"server certificate verification failed for expired.test[127.0.1.6]:25: certificate has expired",
			"Server certificate not verified", false, CertificateExpired},
		{"Postfix 3.7.11 libpostfix-tls: \"%s certificate verification failed for %s: certificate has expired\" (a CA's)",
			"CA certificate verification failed for mx.example.com[192.0.2.1]:25: certificate has expired",
			"Server certificate not verified", false, CertificateExpired},
		{"logparse/testdata/real-postfix37-tlsrpt.log:56,58 (verify, a CA Postfix does not trust)",
			"certificate verification failed for untrusted.test[127.0.1.7]:25: untrusted issuer /CN=mailtls e2e untrusted CA",
			"Server certificate not verified", false, CertificateNotTrusted},
		{"Postfix 3.7.11 libpostfix-tls: \"%s certificate verification failed for %s: num=%d:%s\" with OpenSSL's error 21",
			"server certificate verification failed for mx.example.com[192.0.2.1]:25: num=21:unable to verify the first certificate",
			"Server certificate not verified", false, CertificateNotTrusted},
		{"Postfix 3.7.11 libpostfix-tls: \"%s certificate verification failed for %s: certificate not yet valid\"",
			"server certificate verification failed for mx.example.com[192.0.2.1]:25: certificate not yet valid",
			"Server certificate not verified", false, ValidationFailure},
		{"logparse/testdata/tls-failures.log:10,12",
			"certificate verification failed for selfsigned.test[127.0.0.10]:25: self-signed certificate",
			"Server certificate not trusted", false, CertificateNotTrusted},
		{"Postfix 3.7.11 libpostfix-tls: \"certificate verification failed for %s: untrusted issuer %s\"",
			"certificate verification failed for mx.example.com[192.0.2.1]:25: untrusted issuer /CN=Test CA",
			"Server certificate not verified", false, CertificateNotTrusted},
		{"logparse/testdata/tls-failures.log:12 (reason alone)", "",
			"Server certificate not trusted", false, CertificateNotTrusted},
		{"logparse/testdata/real-postfix37.log:89 (reason alone: the verification line is not recorded)", "",
			"Server certificate not verified", false, ValidationFailure},
		{"logparse/testdata/postfix311.log:6", "",
			"Server certificate not verified", true, ValidationFailure},
		{"Postfix 3.7.11 libpostfix-tls: \"certificate verification failed for %s: not trusted by local or TLSA policy\" (dane)",
			"certificate verification failed for mx.example.com[192.0.2.1]:25: not trusted by local or TLSA policy",
			"Server certificate not verified", true, TLSAInvalid},
		{"the same line under a tafile (not DANE) policy",
			"certificate verification failed for mx.example.com[192.0.2.1]:25: not trusted by local or TLSA policy",
			"Server certificate not verified", false, CertificateNotTrusted},
		{"logparse/testdata/real-postfix37-dane.log:25,33 (dane-only, TLSA 3 1 1 of another key)",
			"server certificate verification failed for mx.tlsa-bad.test[127.0.1.2]:25: num=65:no matching DANE TLSA records",
			"Server certificate not verified", false, TLSAInvalid},
		{"logparse/testdata/real-postfix37-dane.log:97,99 (dane-only, DANE-TA 2 0 1 of another certificate)",
			"CA certificate verification failed for x.wild.test[127.0.1.2]:25: num=65:no matching DANE TLSA records",
			"Server certificate not verified", false, TLSAInvalid},
		{"logparse/testdata/real-postfix37-dane.log:87,89 (dane-only, DANE-TA: the MX name is not in the certificate)",
			"server certificate verification failed for mx.ta-name.test[127.0.1.2]:25: num=62:hostname mismatch",
			"Server certificate not verified", false, CertificateHostMismatch},
		{"logparse/testdata/real-postfix37-dane.log:61,64 (dane-only, TLSA 3 1 7: the warning is the session's verify text, delivery.Delivery.TLSVerify)",
			"all TLSA records unusable", "Server certificate not verified", false, TLSAInvalid},
		{"logparse/testdata/real-postfix37-dane.log:62,64 (the same session's verification failure alone says nothing specific)",
			"server certificate verification failed for mx.tlsa-unusable.test[127.0.1.2]:25: num=1:unspecified certificate verification error",
			"Server certificate not verified", false, ValidationFailure},
		{"Postfix 3.7.11 smtp: \"TLSA records unusable\"", "",
			"TLSA records unusable", true, TLSAInvalid},
		{"logparse/testdata/real-postfix37-dane.log:53 (dane-only, the TLSA query SERVFAILs)", "",
			"TLSA lookup error for mx.tlsa-fail.test:25", false, DNSSECInvalid},
		{"Postfix 3.7.11 libpostfix-tls: \"DNSSEC status lookup error for %s: %s\"", "",
			"DNSSEC status lookup error for mx.example.com: Host not found, try again", true, DNSSECInvalid},
		{"logparse/testdata/real-postfix37-dane.log:37 (dane-only, a signed MX host without TLSA records)", "",
			"no TLSA records found", false, DANERequired},
		{"logparse/testdata/real-postfix37-dane.log:44 (dane-only, an unsigned destination)", "",
			"non DNSSEC destination", false, DANERequired},
		{"logparse/testdata/fallback.log:4", "",
			"Cannot start TLS: handshake failure", false, ValidationFailure},
		{"logparse/testdata/tls-failures.log:14 (not a TLS failure)", "",
			"host starttls-only.test[127.0.0.11] said: 530 5.7.0 Must issue a STARTTLS command first (in reply to MAIL FROM command)", false, ""},
		{"logparse/testdata/tls-failures.log:3 (sent)", "",
			"250 2.0.0 Ok: queued as 2E3F41C0E4", false, ""},
	}
	for _, tc := range tests {
		if got := Classify(tc.verify, tc.reason, tc.dane); got != tc.want {
			t.Errorf("%s: Classify(%q, %q, dane=%v) = %q, want %q", tc.source, tc.verify, tc.reason, tc.dane, got, tc.want)
		}
	}
}

func TestSTSFetchResult(t *testing.T) {
	tests := []struct {
		err  error
		want ResultType
	}{
		{nil, ""},
		{fmt.Errorf("%w: GET https://mta-sts.example/.well-known/mta-sts.txt: HTTP 404 Not Found (want 200)", mtasts.ErrPolicyFetch), STSPolicyFetchError},
		{fmt.Errorf("%w: %w", mtasts.ErrPolicyFetch, x509.UnknownAuthorityError{}), STSWebPKIInvalid},
		{fmt.Errorf("%w: %w", mtasts.ErrPolicyFetch, x509.HostnameError{Host: "mta-sts.example"}), STSWebPKIInvalid},
		{fmt.Errorf("%w: mode: want enforce, testing or none", mtasts.ErrPolicySyntax), STSPolicyInvalid},
		{errors.New("dial tcp 127.0.0.1:443: connection refused"), STSPolicyFetchError},
	}
	for _, tc := range tests {
		if got := STSFetchResult(tc.err); got != tc.want {
			t.Errorf("STSFetchResult(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
