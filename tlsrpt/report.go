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

	"github.com/mailtls/mailtls/delivery"
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
	// Periods are the policies in force during Day, in time order (see
	// InForce): each session counts under the one in force at its start,
	// and each policy with sessions is one element of policies[]. Without
	// Periods, Policy is the policy of the whole day.
	Periods []PolicyPeriod
	Policy  Policy
	// FetchFailure, when it falls on Day, is reported as a failure of its
	// own (§4.3.2.2): one failed policy discovery.
	FetchFailure *PolicyFetchFailure
	// Deliveries are the day's recorded delivery rows of Domain, in time
	// order (store.Deliveries, converted).
	Deliveries []delivery.Delivery
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

// PolicyPeriod is a policy in force from From on, until the From of the
// next period.
type PolicyPeriod struct {
	From   time.Time
	Policy Policy
}

// InForce returns the periods among changes (the answers in force for a
// domain over time, in time order, each from its From until the next
// one's) that overlap the UTC day holding day, the first moved to the
// day's start. Before the first change the destination had no published
// answer: no-policy-found.
func InForce(day time.Time, changes []PolicyPeriod) []PolicyPeriod {
	start, end := Day(day)
	out := []PolicyPeriod{{From: start, Policy: Policy{Type: PolicyNoPolicyFound}}}
	for _, c := range changes {
		switch {
		case !c.From.Before(end):
			return out
		case !c.From.After(start):
			out[0].Policy = c.Policy
		default:
			out = append(out, c)
		}
	}
	return out
}

// Build makes the report of in. A report with no session and no failure
// is still a report (with the first policy); callers decide whether to
// send it.
func Build(in Input) Report {
	start, end := Day(in.Day)
	periods := in.Periods
	if len(periods) == 0 {
		periods = []PolicyPeriod{{From: start, Policy: in.Policy}}
	}
	type detailKey struct {
		rt               ResultType
		host, ip, reason string
	}
	type acc struct {
		pr     PolicyResult
		counts map[detailKey]int64
	}
	// A policy in force in several periods of the day is one element.
	var accs []*acc
	byPolicy := map[string]*acc{}
	of := make([]*acc, len(periods))
	for i, p := range periods {
		pol := p.Policy
		pol.Domain = in.Domain
		k, _ := json.Marshal(pol)
		a, ok := byPolicy[string(k)]
		if !ok {
			a = &acc{pr: PolicyResult{Policy: pol}, counts: map[detailKey]int64{}}
			byPolicy[string(k)] = a
			accs = append(accs, a)
		}
		of[i] = a
	}
	// A delivery record is logged after the session, whose policy Postfix
	// looked up before it, and traditional syslog stamps have whole
	// seconds: a session logged in the second a policy came into force
	// counts under it.
	at := func(t time.Time) *acc {
		i := 0
		for j, p := range periods {
			if !p.From.Truncate(time.Second).After(t) {
				i = j
			}
		}
		return of[i]
	}
	for _, s := range Sessions(in.Deliveries) {
		a := at(s.Time)
		if s.Result == "" {
			a.pr.Summary.Successful++
			continue
		}
		a.pr.Summary.Failed++
		a.counts[detailKey{s.Result, s.MXHost, s.IP, s.Reason}]++
	}
	if f := in.FetchFailure; f != nil && !f.Time.Before(start) && f.Time.Before(end) && f.ResultType != "" {
		a := at(f.Time)
		a.pr.Summary.Failed++
		a.counts[detailKey{rt: f.ResultType, reason: scrub(f.Error)}]++
	}
	var policies []PolicyResult
	for _, a := range accs {
		pr := a.pr
		if pr.Summary.Successful+pr.Summary.Failed == 0 {
			continue // in force, but no session under it
		}
		for k, n := range a.counts {
			pr.FailureDetails = append(pr.FailureDetails, FailureDetail{
				ResultType: k.rt, SendingMTAIP: in.SendingMTAIP, ReceivingMXHostname: k.host,
				ReceivingIP: k.ip, FailedSessionCount: n, FailureReasonCode: k.reason,
			})
		}
		slices.SortFunc(pr.FailureDetails, func(a, b FailureDetail) int {
			return cmp.Or(cmp.Compare(a.ResultType, b.ResultType), cmp.Compare(a.ReceivingMXHostname, b.ReceivingMXHostname),
				cmp.Compare(a.ReceivingIP, b.ReceivingIP), cmp.Compare(a.FailureReasonCode, b.FailureReasonCode))
		})
		policies = append(policies, pr)
	}
	if len(policies) == 0 {
		policies = []PolicyResult{accs[0].pr} // §4.4: at least one element
	}
	return Report{
		OrganizationName: in.Organization,
		DateRange:        DateRange{Start: start.Format(time.RFC3339), End: end.Add(-time.Second).Format(time.RFC3339)},
		ContactInfo:      in.Contact,
		ReportID:         ReportID(in.Organization, in.Domain, start),
		Policies:         policies,
	}
}

// Totals sums the session counts of every policy of r.
func (r Report) Totals() Summary {
	var t Summary
	for _, p := range r.Policies {
		t.Successful += p.Summary.Successful
		t.Failed += p.Summary.Failed
	}
	return t
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
	Time       time.Time // of its first delivery record
	MXHost, IP string
	// Result is "" for a session whose TLS negotiation succeeded.
	Result ResultType
	// Reason is the scrubbed log text the result came from.
	Reason string
	// Postfix: the result is Postfix's own, from its TLSRPT status line.
	Postfix bool
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
//     temporarily suspended" repeats a failure counted already), except
//     an smtp(8) or lmtp(8) deferral for a DANE policy that could not be
//     met before connecting: "no TLSA records found" and "non DNSSEC
//     destination" (dane-required), "TLSA lookup error" (dnssec-invalid),
//     each an attempt that RFC 8460 counts as a failed session, with no
//     MX host or address;
//   - rows whose TLS state is unknown (smtp_tls_loglevel 0) and that name
//     no TLS failure.
//
// A session fails when any of its rows names a TLS failure (Classify), or
// went out in plaintext: starttls-not-supported, or validation-failure
// after a failed handshake (fallback). Where Postfix >= 3.10 logged its
// own TLSRPT status for the session (delivery.Delivery.TLSRPT) with a
// result type of RFC 8460, that status is the result, success included.
func Sessions(ds []delivery.Delivery) []Session {
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
		if d.Internal || d.Relay == "" || d.Relay == "none" && !daneBeforeConnect(d) {
			continue
		}
		rt, reason, postfix := classifyRow(d)
		if rt == "" && !postfix && (d.TLS == nil || !*d.TLS) {
			continue
		}
		k := key{d.LogHost, d.Process, d.QueueID, d.Relay, d.PID}
		if o, ok := cur[k]; ok && d.Time.Sub(o.last) <= sessionGap && d.Time.Sub(o.last) >= 0 {
			o.last = d.Time
			cur[k] = o
			switch s := &out[o.idx]; {
			case postfix && !s.Postfix:
				s.Result, s.Reason, s.Postfix = rt, reason, true
			case !postfix && !s.Postfix && s.Result == "" && rt != "":
				s.Result, s.Reason = rt, reason
			}
			continue
		}
		host, ip := splitRelay(d.Relay)
		if d.Relay == "none" {
			host = ""
		}
		out = append(out, Session{Time: d.Time, MXHost: host, IP: ip, Result: rt, Reason: reason, Postfix: postfix})
		cur[k] = open{idx: len(out) - 1, last: d.Time}
	}
	return out
}

// classifyRow is the result type of one delivery row, and whether it is
// Postfix's own: the TLSRPT status Postfix >= 3.10 logged for the session
// (success or a failure of a known result type), else a TLS failure named
// by the row's reason, made specific by the session's certificate
// verification failure (a hostname mismatch, an expired certificate), or
// a plaintext delivery. Rows of an encrypted session that were deferred
// for other reasons (a 4xx reply to RCPT) are successful TLS sessions.
func classifyRow(d *delivery.Delivery) (ResultType, string, bool) {
	if d.TLSRPT != "" {
		if st, err := logparse.ParseTLSRPTStatus(d.TLSRPT); err == nil {
			if st.Success {
				return "", "", true
			}
			if rt := ResultType(st.FailureType); rt.Known() {
				return rt, scrub(st.FailureReason), true
			}
		}
	}
	dane := strings.HasPrefix(d.TLSFeature, "dane") || strings.HasPrefix(d.TLSFeature, "!dane")
	if d.TLSFailure || d.Status != delivery.Sent {
		if rt := Classify("", d.Reason, dane); rt != "" {
			if d.TLSVerify != "" && (rt == ValidationFailure || rt == CertificateNotTrusted) {
				if v := Classify(d.TLSVerify, "", dane); v != "" {
					return v, scrub(d.TLSVerify), false
				}
			}
			return rt, scrub(d.Reason), false
		}
	}
	if d.Status == delivery.Sent && d.TLS != nil && !*d.TLS {
		if d.Fallback {
			return ValidationFailure, "plaintext after a failed TLS handshake", false
		}
		return StartTLSNotSupported, "delivered in plaintext: STARTTLS not offered", false
	}
	return "", "", false
}

// daneBeforeConnect says that a relay=none row is an SMTP or LMTP
// client's deferral because the DANE policy's DNS records were missing,
// insecure or unreadable (smtp_tls_policy.c): no TLSA records found, non
// DNSSEC destination, TLSA lookup error.
func daneBeforeConnect(d *delivery.Delivery) bool {
	p := d.Process
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		p = p[i+1:]
	}
	if p != "smtp" && p != "lmtp" {
		return false
	}
	switch Classify("", d.Reason, true) {
	case DANERequired, DNSSECInvalid:
		return true
	}
	return false
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
