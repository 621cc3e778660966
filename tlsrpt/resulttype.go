package tlsrpt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"

	"github.com/mailtls/mailtls/mtasts"
)

// ResultType is an RFC 8460 §4.3.2 result-type.
type ResultType string

// Result types of RFC 8460 §4.3.2.1 (negotiation), §4.3.2.2 (policy) and
// §4.3.2.3 (general).
const (
	StartTLSNotSupported    ResultType = "starttls-not-supported"
	CertificateHostMismatch ResultType = "certificate-host-mismatch"
	CertificateExpired      ResultType = "certificate-expired"
	CertificateNotTrusted   ResultType = "certificate-not-trusted"
	ValidationFailure       ResultType = "validation-failure"
	TLSAInvalid             ResultType = "tlsa-invalid"
	DNSSECInvalid           ResultType = "dnssec-invalid"
	DANERequired            ResultType = "dane-required"
	STSPolicyFetchError     ResultType = "sts-policy-fetch-error"
	STSPolicyInvalid        ResultType = "sts-policy-invalid"
	STSWebPKIInvalid        ResultType = "sts-webpki-invalid"
)

// resultTypes are every result type of RFC 8460 §4.3.2.
var resultTypes = [...]ResultType{StartTLSNotSupported, CertificateHostMismatch, CertificateExpired, CertificateNotTrusted,
	ValidationFailure, TLSAInvalid, DNSSECInvalid, DANERequired, STSPolicyFetchError, STSPolicyInvalid, STSWebPKIInvalid}

// Known reports whether r is a result type of RFC 8460.
func (r ResultType) Known() bool {
	for _, k := range resultTypes {
		if r == k {
			return true
		}
	}
	return false
}

// rule maps a fragment of Postfix's log text to a result type. Rules are
// tried in order and the first whose fragment occurs (case-insensitively)
// wins, so the specific ones come first.
type rule struct {
	fragment string
	result   ResultType
	// dane: the rule applies only when the policy is a DANE (tlsa) one.
	dane bool
}

// rules come from Postfix's own message texts (smtp(8), tls_verify.c,
// tls_dane.c, smtp_tls_policy.c as built into Postfix 3.7; the golden test
// lists a real line for each). The texts of the "certificate verification
// failed" lines (delivery.Delivery.TLSVerify) are the most specific; the
// delivery record's reason ("Server certificate not verified") is what is
// left when only that was recorded.
//
// Where Postfix 3.10's own TLSRPT code (tls_verify.c, smtp_proto.c) names
// these failures differently, RFC 8460 §4.3.2.1 decides here: a
// self-signed certificate or an untrusted issuer is
// certificate-not-trusted ("a trust chain could not be established"),
// which Postfix 3.10 reports as validation-failure with the OpenSSL error
// as failure_reason. Postfix's own TLSRPT lines, where logged, win
// (Sessions).
var rules = []rule{
	// tls_verify.c: "certificate verification failed for %s: num=%d:%s"
	// with OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH (62).
	{fragment: "hostname mismatch", result: CertificateHostMismatch},
	{fragment: "certificate has expired", result: CertificateExpired},
	{fragment: "certificate not yet valid", result: ValidationFailure},
	// Under DANE, "not trusted by local or TLSA policy" and OpenSSL's
	// X509_V_ERR_DANE_NO_MATCH (65) mean no TLSA record matched.
	{fragment: "not trusted by local or tlsa policy", result: TLSAInvalid, dane: true},
	{fragment: "no matching dane tlsa records", result: TLSAInvalid},
	{fragment: "tlsa records unusable", result: TLSAInvalid},
	{fragment: "not trusted by local or tlsa policy", result: CertificateNotTrusted},
	{fragment: "self-signed certificate", result: CertificateNotTrusted},
	{fragment: "untrusted issuer", result: CertificateNotTrusted},
	{fragment: "unable to get local issuer certificate", result: CertificateNotTrusted},
	// OpenSSL's X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE (21), in the
	// "num=21:..." form: a lone certificate whose issuer is unknown.
	{fragment: "unable to verify the first certificate", result: CertificateNotTrusted},
	// smtp_tls_policy.c / tls_dane.c: the TLSA or DNSSEC lookup itself
	// failed (SERVFAIL, typically a bogus signature).
	{fragment: "tlsa lookup error", result: DNSSECInvalid},
	{fragment: "dnssec status lookup error", result: DNSSECInvalid},
	// dane-only (or dane with smtp_tls_dane_insecure_mx_policy=dane) and
	// no DNSSEC-validated TLSA records for the MX host.
	{fragment: "no tlsa records found", result: DANERequired},
	{fragment: "non dnssec destination", result: DANERequired},
	// smtp_proto.c: "TLS is required, but was not offered by host %s",
	// and a 4xx/5xx answer to STARTTLS.
	{fragment: "tls is required, but was not offered", result: StartTLSNotSupported},
	{fragment: "refused to start tls", result: StartTLSNotSupported},
	// smtp_proto.c, the delivery record's reason after a failed
	// verification.
	{fragment: "server certificate not trusted", result: CertificateNotTrusted},
	{fragment: "server certificate not verified", result: ValidationFailure},
	// A handshake that failed (opportunistic fallback, or a deferral).
	{fragment: "cannot start tls", result: ValidationFailure},
	{fragment: "ssl_connect error", result: ValidationFailure},
	{fragment: "tls handshake failed", result: ValidationFailure},
}

// Classify maps Postfix's log text for a failed TLS session to a result
// type: verify is the text of the session's "certificate verification
// failed" line, if known (it is the more specific), reason the delivery
// record's reason; dane says the policy in force was a DANE one. It
// returns "" when neither text names a TLS failure.
func Classify(verify, reason string, dane bool) ResultType {
	for _, text := range []string{verify, reason} {
		if text == "" {
			continue
		}
		l := strings.ToLower(text)
		for _, r := range rules {
			if r.dane && !dane {
				continue
			}
			if strings.Contains(l, r.fragment) {
				return r.result
			}
		}
	}
	return ""
}

// STSFetchResult maps an MTA-STS policy fetch failure of our own resolver
// (mtasts.Fetcher, via package published) to a result type (RFC 8460
// §4.3.2.2): the certificate of mta-sts.<domain> failed WebPKI validation,
// the policy did not parse, or the fetch failed otherwise.
func STSFetchResult(err error) ResultType {
	var (
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostname x509.HostnameError
		verify   *tls.CertificateVerificationError
	)
	switch {
	case err == nil:
		return ""
	case errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &hostname), errors.As(err, &verify):
		return STSWebPKIInvalid
	case errors.Is(err, mtasts.ErrPolicySyntax):
		return STSPolicyInvalid
	default:
		return STSPolicyFetchError
	}
}
