// Package discover finds out which TLS a mail domain supports before an
// operator forces a TLS policy on it: the `mailtls check` command.
//
// It looks up the domain's MX hosts (RFC 5321 §5.1, including the implicit
// MX and the null MX of RFC 7505), their addresses and DANE TLSA records
// (RFC 6698, RFC 7672: _25._tcp.<mx>, trusted only when the resolver sets
// the AD bit), the MTA-STS TXT record and policy (RFC 8461) and the TLSRPT
// record (RFC 8460). It then probes every MX over SMTP with EHLO and
// STARTTLS (RFC 3207), never sending MAIL FROM, and recommends the strongest
// Postfix smtp_tls_policy_maps level that would have worked right now.
//
// DNS goes through github.com/miekg/dns to a configured or the system
// resolver. The DNS server, the SMTP dialer, the HTTPS port of the MTA-STS
// policy host, the certificate roots and the clock are all replaceable so
// that tests run against in-process servers on 127.0.0.1.
package discover
