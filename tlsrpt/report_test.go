package tlsrpt

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

var day = time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)

func tp(b bool) *bool { return &b }

// row is a delivery record of smtp[pid] at second sec of day.
func row(sec float64, pid int, qid, rcpt, relay string, status delivery.Status, reason string, tls *bool) delivery.Delivery {
	return delivery.Delivery{Time: day.Add(time.Duration(sec * float64(time.Second))), LogHost: "mx", Process: "postfix/smtp", PID: pid,
		QueueID: qid, Recipient: rcpt, Domain: "dest.example", Relay: relay, Status: status, Reason: reason, TLS: tls}
}

// sampleDeliveries: a day of deliveries to dest.example, with the sessions
// a reader counts by hand in the comments.
func sampleDeliveries() []delivery.Delivery {
	const (
		mx1 = "mx1.dest.example[192.0.2.1]:25"
		mx2 = "mx2.dest.example[192.0.2.2]:25"
	)
	failed := func(d delivery.Delivery) delivery.Delivery { d.TLSFailure = true; return d }
	ds := []delivery.Delivery{
		// session 1: three recipients of one message, one TLS session.
		row(10, 100, "AAA", "a1@dest.example", mx1, "sent", "250 2.0.0 Ok", tp(true)),
		row(10.2, 100, "AAA", "a2@dest.example", mx1, "sent", "250 2.0.0 Ok", tp(true)),
		row(10.3, 100, "AAA", "a3@dest.example", mx1, "deferred", "host mx1.dest.example[192.0.2.1] said: 450 4.2.0 <a3@dest.example>: Recipient address rejected: Greylisted", tp(true)),
		// session 2: the same message retried by the same process later.
		row(400, 100, "AAA", "a3@dest.example", mx1, "sent", "250 2.0.0 Ok", tp(true)),
		// session 3: another message, same process and relay (reuse).
		row(400.5, 100, "BBB", "b@dest.example", mx1, "sent", "250 2.0.0 Ok", tp(true)),
		// session 4: two recipients, certificate not verified (logparse/testdata/real-postfix37.log:89).
		failed(row(500, 101, "CCC", "c1@dest.example", mx2, "deferred", "Server certificate not verified", tp(true))),
		failed(row(500.01, 101, "CCC", "c2@dest.example", mx2, "deferred", "Server certificate not verified", tp(true))),
		// session 5: no STARTTLS under a forced policy (tls-failures.log:4).
		failed(row(600, 102, "DDD", "d@dest.example", mx1, "deferred", "TLS is required, but was not offered by host mx1.dest.example[192.0.2.1]", tp(false))),
		// not a session: postfix/error repeats the failure without connecting.
		failed(delivery.Delivery{Time: day.Add(601 * time.Second), Process: "postfix/error", PID: 103, QueueID: "DDD", Recipient: "d2@dest.example",
			Domain: "dest.example", Relay: "none", Status: "deferred", Reason: "delivery temporarily suspended: TLS is required, but was not offered by host mx1.dest.example[192.0.2.1]"}),
		// session 6: delivered in plaintext (may, no STARTTLS).
		row(700, 104, "EEE", "e@dest.example", mx1, "sent", "250 2.0.0 Ok", tp(false)),
		// not a session: TLS unknown (smtp_tls_loglevel 0).
		row(800, 105, "FFF", "f@dest.example", mx1, "sent", "250 2.0.0 Ok", nil),
	}
	in := row(900, 106, "GGG", "g@dest.example", "127.0.0.1[127.0.0.1]:10025", "sent", "250 Ok", tp(false))
	in.Internal = true // not a session: a content filter hop
	return append(ds, in)
}

func sampleInput() Input {
	return Input{Organization: "Example Org", Contact: "mailto:postmaster@sender.example", SendingMTAIP: "198.51.100.7",
		Domain: "dest.example", Day: day.Add(13 * time.Hour),
		Policy: Policy{Type: PolicySTS, String: []string{"version: STSv1", "mode: enforce", "mx: *.dest.example", "max_age: 86400"},
			MXHost: []string{"*.dest.example"}},
		FetchFailure: &PolicyFetchFailure{Time: day.Add(20 * time.Hour), ResultType: STSPolicyFetchError,
			Error: "mtasts: MTA-STS policy fetch failed: GET https://mta-sts.dest.example/.well-known/mta-sts.txt: HTTP 500 Internal Server Error (want 200)"},
		Deliveries: sampleDeliveries(),
	}
}

func TestBuild(t *testing.T) {
	r := Build(sampleInput())
	want := Report{
		OrganizationName: "Example Org",
		DateRange:        DateRange{Start: "2026-11-30T00:00:00Z", End: "2026-11-30T23:59:59Z"},
		ContactInfo:      "mailto:postmaster@sender.example",
		ReportID:         ReportID("Example Org", "dest.example", day),
		Policies: []PolicyResult{{
			Policy: Policy{Type: PolicySTS, String: []string{"version: STSv1", "mode: enforce", "mx: *.dest.example", "max_age: 86400"},
				Domain: "dest.example", MXHost: []string{"*.dest.example"}},
			Summary: Summary{Successful: 3, Failed: 4},
			FailureDetails: []FailureDetail{
				{ResultType: StartTLSNotSupported, SendingMTAIP: "198.51.100.7", ReceivingMXHostname: "mx1.dest.example", ReceivingIP: "192.0.2.1",
					FailedSessionCount: 1, FailureReasonCode: "TLS is required, but was not offered by host mx1.dest.example[192.0.2.1]"},
				{ResultType: StartTLSNotSupported, SendingMTAIP: "198.51.100.7", ReceivingMXHostname: "mx1.dest.example", ReceivingIP: "192.0.2.1",
					FailedSessionCount: 1, FailureReasonCode: "delivered in plaintext: STARTTLS not offered"},
				{ResultType: STSPolicyFetchError, SendingMTAIP: "198.51.100.7", FailedSessionCount: 1,
					FailureReasonCode: "mtasts: MTA-STS policy fetch failed: GET https://mta-sts.dest.example/.well-known/mta-sts.txt: HTTP 500 Internal Server Error (want 200)"},
				{ResultType: ValidationFailure, SendingMTAIP: "198.51.100.7", ReceivingMXHostname: "mx2.dest.example", ReceivingIP: "192.0.2.2",
					FailedSessionCount: 1, FailureReasonCode: "Server certificate not verified"},
			},
		}},
	}
	if !reflect.DeepEqual(r, want) {
		g, _ := json.MarshalIndent(r, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("Build:\n%s\nwant:\n%s", g, w)
	}
	if !strings.HasPrefix(r.ReportID, "2026-11-30_dest.example_") || ReportID("Other", "dest.example", day) == r.ReportID {
		t.Errorf("report id %q", r.ReportID)
	}

	// The fetch failure of another day is not this day's.
	in := sampleInput()
	in.FetchFailure.Time = day.Add(-time.Minute)
	if s := Build(in).Policies[0].Summary; s != (Summary{3, 3}) {
		t.Errorf("fetch failure of the day before counted: %+v", s)
	}
}

// TestNoRecipientAddresses: no address of the input reaches the report,
// not even one a remote server quoted in a TLS failure's reason.
func TestNoRecipientAddresses(t *testing.T) {
	in := sampleInput()
	d := row(1000, 200, "HHH", "secret@dest.example", "mx1.dest.example[192.0.2.1]:25", "bounced",
		"TLS is required, but host mx1.dest.example[192.0.2.1] refused to start TLS: 554 5.7.1 <secret@dest.example> not welcome", tp(false))
	d.TLSFailure = true
	in.Deliveries = append(in.Deliveries, d)
	r := Build(in)
	data, err := Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range in.Deliveries {
		if strings.Contains(string(data), d.Recipient) {
			t.Errorf("report holds recipient %q: %s", d.Recipient, data)
		}
	}
	if !strings.Contains(string(data), "refused to start TLS: 554 5.7.1 <address> not welcome") {
		t.Errorf("the reason lost more than the address: %s", data)
	}
}

// schema is RFC 8460 §4.3/§4.4's report structure: required members,
// their JSON types, enumerations and formats. No other member is allowed:
// the report holds what the RFC asks for and nothing else (§7).
type schema struct {
	typ      string // object, array, string, integer
	required []string
	props    map[string]*schema
	items    *schema
	enum     []string
	pattern  *regexp.Regexp
	minItems int
}

var (
	dateTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$`)
	str      = &schema{typ: "string"}
	count    = &schema{typ: "integer"}
	strs     = &schema{typ: "array", items: str}
	rfc8460  = &schema{typ: "object", required: []string{"organization-name", "date-range", "contact-info", "report-id", "policies"},
		props: map[string]*schema{
			"organization-name": str,
			"date-range": {typ: "object", required: []string{"start-datetime", "end-datetime"}, props: map[string]*schema{
				"start-datetime": {typ: "string", pattern: dateTime}, "end-datetime": {typ: "string", pattern: dateTime}}},
			"contact-info": str,
			"report-id":    str,
			"policies": {typ: "array", minItems: 1, items: &schema{typ: "object", required: []string{"policy", "summary"}, props: map[string]*schema{
				"policy": {typ: "object", required: []string{"policy-type", "policy-domain"}, props: map[string]*schema{
					"policy-type":   {typ: "string", enum: []string{"tlsa", "sts", "no-policy-found"}},
					"policy-string": strs, "policy-domain": str, "mx-host": strs}},
				"summary": {typ: "object", required: []string{"total-successful-session-count", "total-failure-session-count"},
					props: map[string]*schema{"total-successful-session-count": count, "total-failure-session-count": count}},
				"failure-details": {typ: "array", items: &schema{typ: "object", required: []string{"result-type", "failed-session-count"},
					props: map[string]*schema{
						"result-type": {typ: "string", enum: []string{"starttls-not-supported", "certificate-host-mismatch",
							"certificate-expired", "certificate-not-trusted", "validation-failure", "tlsa-invalid", "dnssec-invalid",
							"dane-required", "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid"}},
						"sending-mta-ip": str, "receiving-mx-hostname": str, "receiving-mx-helo": str, "receiving-ip": str,
						"failed-session-count": count, "additional-information": str, "failure-reason-code": str}}},
			}}},
		}}
)

func (s *schema) check(path string, v any) []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, args...)) }
	switch s.typ {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			bad("want an object, got %T", v)
			return errs
		}
		for _, k := range s.required {
			if _, ok := m[k]; !ok {
				bad("missing %q", k)
			}
		}
		for k, x := range m {
			p, ok := s.props[k]
			if !ok {
				bad("member %q is not in RFC 8460", k)
				continue
			}
			errs = append(errs, p.check(path+"."+k, x)...)
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			bad("want an array, got %T", v)
			return errs
		}
		if len(a) < s.minItems {
			bad("want at least %d items", s.minItems)
		}
		for i, x := range a {
			errs = append(errs, s.items.check(fmt.Sprintf("%s[%d]", path, i), x)...)
		}
	case "string":
		x, ok := v.(string)
		switch {
		case !ok:
			bad("want a string, got %T", v)
		case s.enum != nil && !slices.Contains(s.enum, x):
			bad("%q is not one of %q", x, s.enum)
		case s.pattern != nil && !s.pattern.MatchString(x):
			bad("%q is not an RFC 3339 date-time", x)
		}
	case "integer":
		x, ok := v.(float64)
		if !ok || x != float64(int64(x)) || x < 0 {
			bad("want a non-negative integer, got %v", v)
		}
	}
	return errs
}

// CheckSchema reports where the JSON document data departs from RFC 8460
// §4's structure; tests of other packages (cmd) use it too via
// schemaErrors.
func schemaErrors(data []byte) []string {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return []string{err.Error()}
	}
	return rfc8460.check("$", v)
}

func TestSchema(t *testing.T) {
	data, err := Marshal(Build(sampleInput()))
	if err != nil {
		t.Fatal(err)
	}
	if errs := schemaErrors(data); errs != nil {
		t.Errorf("report departs from RFC 8460 §4:\n%s\n%s", strings.Join(errs, "\n"), data)
	}
	// The checker catches what it should.
	for _, bad := range []string{
		`{}`,
		`{"organization-name":"o","date-range":{"start-datetime":"2026-11-30","end-datetime":"x"},"contact-info":"c","report-id":"r","policies":[]}`,
		strings.Replace(string(data), `"sts"`, `"mta-sts"`, 1),
		strings.Replace(string(data), `"failed-session-count":1`, `"failed-session-count":"1"`, 1),
		strings.Replace(string(data), `"report-id"`, `"recipient":"a@b","report-id"`, 1),
	} {
		if errs := schemaErrors([]byte(bad)); errs == nil {
			t.Errorf("schema accepts %s", bad)
		}
	}
}
