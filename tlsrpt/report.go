package tlsrpt

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mailtls/mailtls/logparse"
)

// Report is an RFC 8460 §4 aggregate report: one policy domain, one UTC
// day. Field names and order follow §4.4.
type Report struct {
	OrganizationName string         `json:"organization-name"`
	DateRange        DateRange      `json:"date-range"`
	ContactInfo      string         `json:"contact-info"`
	ReportID         string         `json:"report-id"`
	Policies         []PolicyResult `json:"policies"`
}

// DateRange is the report's period, RFC 3339 in UTC (§4.4's example ends
// the day at 23:59:59Z).
type DateRange struct {
	Start string `json:"start-datetime"`
	End   string `json:"end-datetime"`
}

// PolicyResult is one element of policies[].
type PolicyResult struct {
	Policy         Policy          `json:"policy"`
	Summary        Summary         `json:"summary"`
	FailureDetails []FailureDetail `json:"failure-details,omitempty"`
}

// PolicyType is §4.3's policy-type.
type PolicyType string

const (
	PolicySTS           PolicyType = "sts"
	PolicyTLSA          PolicyType = "tlsa"
	PolicyNoPolicyFound PolicyType = "no-policy-found"
)

// Policy is the policy that applied (§4.3): for sts the policy's lines and
// mx patterns, for tlsa the TLSA records and the MX hosts they belong to.
type Policy struct {
	Type   PolicyType `json:"policy-type"`
	String []string   `json:"policy-string,omitempty"`
	Domain string     `json:"policy-domain"`
	MXHost []string   `json:"mx-host,omitempty"`
}

// Summary holds §4.3's session counts.
type Summary struct {
	Successful int64 `json:"total-successful-session-count"`
	Failed     int64 `json:"total-failure-session-count"`
}

// FailureDetail is one element of failure-details[] (§4.3).
type FailureDetail struct {
	ResultType          ResultType `json:"result-type"`
	SendingMTAIP        string     `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname string     `json:"receiving-mx-hostname,omitempty"`
	ReceivingIP         string     `json:"receiving-ip,omitempty"`
	FailedSessionCount  int64      `json:"failed-session-count"`
	FailureReasonCode   string     `json:"failure-reason-code,omitempty"`
}

// PolicyFetchFailure is a failed MTA-STS policy fetch of our own resolver,
// with its result type (STSFetchResult) and the error text.
type PolicyFetchFailure struct {
	Time       time.Time
	ResultType ResultType
	Error      string
}

// Input is what a report is made of.
type Input struct {
	Organization string // tlsrpt-org
	Contact      string // tlsrpt-contact
	// SendingMTAIP is our outbound address, when configured: Postfix's
	// delivery records do not log it.
	SendingMTAIP string
	Domain       string
	Day          time.Time // any time on the UTC day
	Policy       Policy
	// FetchFailure, when it falls on Day, is reported as a failure of its
	// own (§4.3.2.2): one failed policy discovery.
	FetchFailure *PolicyFetchFailure
	// Deliveries are the day's recorded delivery rows of Domain, in time
	// order (store.Deliveries, converted).
	Deliveries []logparse.Delivery
}

// Day returns the UTC day holding t, as [start, end).
func Day(t time.Time) (time.Time, time.Time) {
	t = t.UTC()
	s := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return s, s.AddDate(0, 0, 1)
}

// ReportID is deterministic, so that a report shown and the report sent
// for the same (domain, day) carry the same id, and a receiver can tell a
// resend (§4.3: unique per report).
func ReportID(org, domain string, day time.Time) string {
	s, _ := Day(day)
	h := sha256.Sum256([]byte(org + "\x00" + domain + "\x00" + s.Format("2006-01-02")))
	return s.Format("2006-01-02") + "_" + domain + "_" + hex.EncodeToString(h[:8])
}

// Build makes the report of in. A report with no session and no failure
// is still a report; callers decide whether to send it.
func Build(in Input) Report {
	start, end := Day(in.Day)
	pol := in.Policy
	pol.Domain = in.Domain
	pr := PolicyResult{Policy: pol}
	type detailKey struct {
		rt               ResultType
		host, ip, reason string
	}
	counts := map[detailKey]int64{}
	for _, s := range Sessions(in.Deliveries) {
		if s.Result == "" {
			pr.Summary.Successful++
			continue
		}
		pr.Summary.Failed++
		counts[detailKey{s.Result, s.MXHost, s.IP, s.Reason}]++
	}
	if f := in.FetchFailure; f != nil && !f.Time.Before(start) && f.Time.Before(end) && f.ResultType != "" {
		pr.Summary.Failed++
		counts[detailKey{rt: f.ResultType, reason: scrub(f.Error)}]++
	}
	for k, n := range counts {
		pr.FailureDetails = append(pr.FailureDetails, FailureDetail{
			ResultType: k.rt, SendingMTAIP: in.SendingMTAIP, ReceivingMXHostname: k.host,
			ReceivingIP: k.ip, FailedSessionCount: n, FailureReasonCode: k.reason,
		})
	}
	slices.SortFunc(pr.FailureDetails, func(a, b FailureDetail) int {
		return cmp.Or(cmp.Compare(a.ResultType, b.ResultType), cmp.Compare(a.ReceivingMXHostname, b.ReceivingMXHostname),
			cmp.Compare(a.ReceivingIP, b.ReceivingIP), cmp.Compare(a.FailureReasonCode, b.FailureReasonCode))
	})
	return Report{
		OrganizationName: in.Organization,
		DateRange:        DateRange{Start: start.Format(time.RFC3339), End: end.Add(-time.Second).Format(time.RFC3339)},
		ContactInfo:      in.Contact,
		ReportID:         ReportID(in.Organization, in.Domain, start),
		Policies:         []PolicyResult{pr},
	}
}

// Marshal encodes r as the report's JSON (RFC 8460 §4.4), without
// HTML escaping, so that "<" in a reason reads as itself.
func Marshal(r Report) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("tlsrpt: encoding the report: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Session is one TLS negotiation attempt, as RFC 8460 counts sessions.
type Session struct {
	MXHost, IP string
	// Result is "" for a session whose TLS negotiation succeeded.
	Result ResultType
	// Reason is the scrubbed log text the result came from.
	Reason string
}

// sessionGap: the delivery records of one session (one message's
// recipients delivered in one SMTP transaction) are logged together, right
// after the server's reply to the end of data; a retry of the same message
// by the same process comes minutes later (minimal_backoff_time).
const sessionGap = 2 * time.Second

// Sessions groups delivery rows (in time order) into TLS sessions. A
// session is the rows of one smtp(8) process (host, process, pid) for one
// queue id and one relay, each within sessionGap of the one before: Postfix
// writes one delivery record per recipient but negotiates TLS once per
// connection (RFC 8460 §4.3 counts sessions, not recipients). Rows that
// say nothing about a TLS negotiation are left out:
//   - internal hops (content filters, local LMTP);
//   - relay=none: no connection was made (postfix/error's "delivery
//     temporarily suspended" repeats a failure counted already);
//   - rows whose TLS state is unknown (smtp_tls_loglevel 0) and that name
//     no TLS failure.
//
// A session fails when any of its rows names a TLS failure (Classify), or
// went out in plaintext: starttls-not-supported, or validation-failure
// after a failed handshake (fallback).
func Sessions(ds []logparse.Delivery) []Session {
	type key struct {
		host, proc, qid, relay string
		pid                    int
	}
	type open struct {
		idx  int
		last time.Time
	}
	var out []Session
	cur := map[key]open{}
	for i := range ds {
		d := &ds[i]
		if d.Internal || d.Relay == "" || d.Relay == "none" {
			continue
		}
		rt, reason := classifyRow(d)
		if rt == "" && (d.TLS == nil || !*d.TLS) {
			continue
		}
		k := key{d.Host, d.Process, d.QueueID, d.Relay, d.PID}
		if o, ok := cur[k]; ok && d.Time.Sub(o.last) <= sessionGap && d.Time.Sub(o.last) >= 0 {
			o.last = d.Time
			cur[k] = o
			if s := &out[o.idx]; s.Result == "" && rt != "" {
				s.Result, s.Reason = rt, reason
			}
			continue
		}
		host, ip := splitRelay(d.Relay)
		out = append(out, Session{MXHost: host, IP: ip, Result: rt, Reason: reason})
		cur[k] = open{idx: len(out) - 1, last: d.Time}
	}
	return out
}

// classifyRow is the result type of one delivery row: a TLS failure named
// by its reason, or a plaintext delivery. Rows of an encrypted session
// that were deferred for other reasons (a 4xx reply to RCPT) are
// successful TLS sessions.
func classifyRow(d *logparse.Delivery) (ResultType, string) {
	dane := strings.HasPrefix(d.TLSFeature, "dane") || strings.HasPrefix(d.TLSFeature, "!dane")
	if d.TLSFailure || d.Status != logparse.StatusSent {
		if rt := Classify("", d.Reason, dane); rt != "" {
			return rt, scrub(d.Reason)
		}
	}
	if d.Status == logparse.StatusSent && d.TLS != nil && !*d.TLS {
		if d.Fallback {
			return ValidationFailure, "plaintext after a failed TLS handshake"
		}
		return StartTLSNotSupported, "delivered in plaintext: STARTTLS not offered"
	}
	return "", ""
}

// splitRelay splits "host[addr]:port" into host and addr.
func splitRelay(relay string) (string, string) {
	i := strings.IndexByte(relay, '[')
	j := strings.LastIndexByte(relay, ']')
	if i <= 0 || j < i {
		return relay, ""
	}
	host, addr := relay[:i], relay[i+1:j]
	addr = strings.TrimPrefix(addr, "IPv6:")
	if _, err := netip.ParseAddr(addr); err != nil {
		addr = ""
	}
	return strings.TrimSuffix(strings.ToLower(host), "."), addr
}

// addrRE finds mail addresses in log text: a report must hold no recipient
// addresses (RFC 8460 §7 privacy), and a remote server's reply may quote
// one.
var addrRE = regexp.MustCompile(`<?[^\s<>()]+@[^\s<>()]+>?`)

// scrub removes mail addresses from text and caps its length.
func scrub(s string) string {
	s = addrRE.ReplaceAllString(s, "<address>")
	if len(s) > 300 {
		s = s[:300]
	}
	return strings.ToValidUTF8(s, "")
}
