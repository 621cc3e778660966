// Package delivery is the vocabulary of an outbound delivery attempt: the
// Delivery record that logparse produces and store keeps, its Status, and
// the TLS outcome and trust of the session that carried it. It does no
// I/O: the parsers, the store and the reports import it.
package delivery

import (
	"strings"
	"time"
)

// Delivery is one outbound delivery attempt as logged by a Postfix smtp(8)
// or lmtp(8) client ("to=<...>, relay=..., status=..." line), joined with the
// TLS session that carried it.
type Delivery struct {
	Time time.Time // UTC; the store keeps microsecond precision
	// Host is the fleet host that stored the delivery (--host; see
	// store/hosts.go). The store sets it when reading; a write stores the
	// writer's host whatever it holds, and the parser leaves it "".
	Host      string
	LogHost   string // the host field of the log line (syslog; may be "")
	Process   string // e.g. "postfix-out/smtp"
	PID       int
	QueueID   string
	Recipient string
	OrigTo    string
	Domain    string // lowercased recipient domain
	Relay     string // as logged, e.g. "mx.example.com[192.0.2.1]:25", or "none"
	Status    Status
	DSN       string
	Reason    string // text in parentheses after status=

	// TLS is nil when unknown: relay=none (no connection was made), or no
	// TLS summary line has ever been seen by the correlator (Postfix logs
	// them only with smtp_tls_loglevel >= 1). See Outcome.
	TLS         *bool
	TLSTrust    Trust // one of the Trust constants, or ""
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
	// the text after "TLSRPT: " (logparse.ParseTLSRPTStatus reads it), or "".
	TLSRPT string
	// Internal marks a hop inside the host (content filter, local LMTP):
	// the relay is a loopback address, a unix socket or a configured
	// internal relay. Reports leave these out of the outbound coverage.
	Internal bool

	// Key is the hex SHA-256 of the raw line (header+message): the same
	// input line always yields the same key, so re-reading is idempotent.
	Key string
}

// Status is the status= of a delivery record, lowercase.
type Status string

// The statuses of delivery records; others (e.g. "deliverable" from
// address verification probes) are not deliveries.
const (
	Sent     Status = "sent"
	Deferred Status = "deferred"
	Bounced  Status = "bounced"
	Expired  Status = "expired"
)

// Statuses lists every Status, in this order.
var Statuses = [...]Status{Sent, Deferred, Bounced, Expired}

// ParseStatus returns the Status that s spells exactly (lowercase), or
// false when s is not a delivery status.
func ParseStatus[T string | []byte](s T) (Status, bool) {
	switch string(s) {
	case "sent":
		return Sent, true
	case "deferred":
		return Deferred, true
	case "bounced":
		return Bounced, true
	case "expired":
		return Expired, true
	}
	return "", false
}

// Trust is the trust level of a TLS session, as it starts Postfix's TLS
// summary line ("Verified TLS connection established to ..."), lowercased.
type Trust string

// The trust levels, weakest first.
const (
	Anonymous Trust = "anonymous" // no certificate
	Untrusted Trust = "untrusted" // a certificate that did not verify
	Trusted   Trust = "trusted"   // a chain to a trusted CA, the name not matched or not checked
	Verified  Trust = "verified"  // a trusted chain with the name matched
)

// Trusts lists every Trust, weakest first.
var Trusts = [...]Trust{Anonymous, Untrusted, Trusted, Verified}

// Outcome is what is known about the encryption of a delivery.
type Outcome int

// The TLS outcomes.
const (
	Plaintext Outcome = iota // a connection without TLS
	Encrypted                // a TLS session
	Unknown                  // no connection, or TLS logging was off
)

// Outcomes lists every Outcome, in this order.
var Outcomes = [...]Outcome{Plaintext, Encrypted, Unknown}

// String returns "plaintext", "encrypted" or "unknown".
func (o Outcome) String() string {
	switch o {
	case Plaintext:
		return "plaintext"
	case Encrypted:
		return "encrypted"
	}
	return "unknown"
}

// Outcome classifies d.TLS: unknown when nil.
func (d *Delivery) Outcome() Outcome {
	switch {
	case d.TLS == nil:
		return Unknown
	case *d.TLS:
		return Encrypted
	}
	return Plaintext
}

// RelayHost returns the host of a relay as Postfix logs it,
// "host[addr]:port": the part before the bracket, in lower case and
// without a trailing dot. A relay without a host before a bracket, or
// whose host is "unknown", is returned whole, so that two unknown hosts
// still differ by their addresses; so is one without brackets ("none").
func RelayHost(relay string) string {
	i := strings.IndexByte(relay, '[')
	if i <= 0 || relay[:i] == "unknown" {
		return relay
	}
	return strings.ToLower(strings.TrimSuffix(relay[:i], "."))
}
