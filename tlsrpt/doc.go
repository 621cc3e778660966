// Package tlsrpt builds SMTP TLS Reporting aggregate reports (RFC 8460)
// from the delivery outcomes mailtls records from Postfix's log, and sends
// them to the addresses a policy domain publishes in its _smtp._tls TXT
// record (RFC 8460 §3, parsed by discover.ParseTLSRPTRecord).
//
// The package holds the protocol logic only: the mapping from Postfix's
// log text to RFC 8460 result types (resulttype.go), the grouping of
// delivery rows into TLS sessions and the report itself (report.go), and
// the two transports of RFC 8460 §5.3 (send.go). Storage (which reports
// were sent) lives in package store.
package tlsrpt
