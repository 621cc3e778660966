package logparse

import "time"

// Delivery is one outbound delivery attempt as logged by a Postfix smtp(8)
// or lmtp(8) client ("to=<...>, relay=..., status=..." line), joined with the
// TLS session that carried it.
type Delivery struct {
	Time      time.Time // UTC
	Host      string    // syslog host field (may be "")
	Process   string    // e.g. "postfix-out/smtp"
	PID       int
	QueueID   string
	Recipient string
	OrigTo    string
	Domain    string // lowercased recipient domain
	Relay     string // as logged, e.g. "mx.example.com[192.0.2.1]:25", or "none"
	Status    string // sent|deferred|bounced|expired
	DSN       string
	Reason    string // text in parentheses after status=

	// TLS is nil when unknown: relay=none (no connection was made), or no
	// TLS summary line has ever been seen by the correlator (Postfix logs
	// them only with smtp_tls_loglevel >= 1).
	TLS         *bool
	TLSTrust    string // anonymous|untrusted|trusted|verified or ""
	TLSProtocol string
	TLSCipher   string
	Fallback    bool // plaintext after a failed handshake to the same relay
	TLSFailure  bool // deferral/bounce caused by TLS

	// TLSFeature is Postfix 3.11's tls= field as logged (for example
	// "may:none", "dane:halfdane", "!encrypt"), or "" when absent.
	TLSFeature string
	// TLSVerify is why certificate verification failed for the session,
	// as Postfix logged it in the line before the TLS summary line
	// ("num=62:hostname mismatch", "certificate has expired", "untrusted
	// issuer /CN=..."), or "".
	TLSVerify string
	// TLSRPT is Postfix >= 3.10's own TLSRPT status of the connection,
	// the text after "TLSRPT: " (ParseTLSRPTStatus reads it), or "".
	TLSRPT string
	// Internal marks a hop inside the host (content filter, local LMTP):
	// the relay is a loopback address, a unix socket or a configured
	// internal relay. Reports leave these out of the outbound coverage.
	Internal bool

	// Key is the hex SHA-256 of the raw line (header+message): the same
	// input line always yields the same key, so re-reading is idempotent.
	Key string
}

// Stats counts what a Correlator has seen.
type Stats struct {
	Lines      int64 // lines fed
	Deliveries int64 // deliveries returned
	Skipped    int64 // lines without a parseable header (garbage, truncated)
	TLSLines   int64 // TLS summary lines from smtp/lmtp clients
}

// Options configure a Correlator.
type Options struct {
	// RefTime is used to infer the year of traditional syslog stamps,
	// which carry none: usually the file's mtime, or now. Zero means now.
	RefTime time.Time
	// Location is the zone of traditional syslog stamps; nil means time.Local.
	Location *time.Location
}
