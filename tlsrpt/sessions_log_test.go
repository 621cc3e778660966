package tlsrpt

import (
	"bytes"
	"os"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/logparse"
)

// parseLog runs a logparse testdata file through the correlator, as the
// follower does, and returns its deliveries by recipient domain.
func parseLog(t *testing.T, name string) map[string][]delivery.Delivery {
	t.Helper()
	b, err := os.ReadFile("../logparse/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	c := logparse.NewCorrelator(logparse.Options{RefTime: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), Location: time.UTC})
	out := map[string][]delivery.Delivery{}
	for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		for _, d := range c.Feed(line) {
			out[d.Domain] = append(out[d.Domain], d)
		}
	}
	return out
}

type sessionResult struct {
	Result  ResultType
	Reason  string
	Postfix bool
}

func results(ds []delivery.Delivery) []sessionResult {
	var out []sessionResult
	for _, s := range Sessions(ds) {
		out = append(out, sessionResult{s.Result, s.Reason, s.Postfix})
	}
	return out
}

// TestSessionsFromLog: the result types of sessions read from log files,
// through the correlator. With Postfix 3.7 (no TLSRPT lines) the
// "certificate verification failed" line before the session makes the
// result specific; with Postfix 3.10's TLSRPT lines (postfix310-tlsrpt.log)
// Postfix's own status decides, success included, and an unknown failure
// type or an unreadable line leaves the session to mailtls's reading.
// Under DANE (real-postfix37-dane.log) a deferral before connecting
// (relay=none: no TLSA records, an insecure MX, a failed TLSA lookup) is
// a failed session too; postfix/error's repeats are not (see
// TestSessionsRelayNone).
func TestSessionsFromLog(t *testing.T) {
	for _, tc := range []struct {
		file, domain string
		want         []sessionResult
	}{
		{"real-postfix37-tlsrpt.log", "mismatch.test", []sessionResult{{CertificateHostMismatch, "num=62:hostname mismatch", false}}},
		{"real-postfix37-tlsrpt.log", "expired.test", []sessionResult{{CertificateExpired, "certificate has expired", false}}},
		{"real-postfix37-tlsrpt.log", "untrusted.test", []sessionResult{{CertificateNotTrusted, "untrusted issuer /CN=mailtls e2e untrusted CA", false}}},
		{"real-postfix37-tlsrpt.log", "plain.test", []sessionResult{{StartTLSNotSupported, "TLS is required, but was not offered by host plain.test[127.0.1.3]", false}}},
		{"real-postfix37-tlsrpt.log", "tls.test", []sessionResult{{"", "", false}}},
		{"real-postfix37-dane.log", "dane-ok.test", []sessionResult{{"", "", false}}},
		{"real-postfix37-dane.log", "tlsa-bad.test", []sessionResult{{TLSAInvalid, "num=65:no matching DANE TLSA records", false}}},
		{"real-postfix37-dane.log", "tlsa-unusable.test", []sessionResult{{TLSAInvalid, "all TLSA records unusable", false}}},
		{"real-postfix37-dane.log", "ta-ok.test", []sessionResult{{"", "", false}}},
		{"real-postfix37-dane.log", "ta-name.test", []sessionResult{{CertificateHostMismatch, "num=62:hostname mismatch", false}}},
		{"real-postfix37-dane.log", "ta-bad.test", []sessionResult{{TLSAInvalid, "num=65:no matching DANE TLSA records", false}}},
		{"real-postfix37-dane.log", "no-tlsa.test", []sessionResult{{DANERequired, "no TLSA records found", false}}},
		{"real-postfix37-dane.log", "insecure.test", []sessionResult{{DANERequired, "non DNSSEC destination", false}}},
		{"real-postfix37-dane.log", "tlsa-fail.test", []sessionResult{{DNSSECInvalid, "TLSA lookup error for mx.tlsa-fail.test:25", false}}},
		{"tls-failures.log", "mismatch.test", []sessionResult{{CertificateHostMismatch, "num=62:hostname mismatch", false}}},
		{"tls-failures.log", "selfsigned.test", []sessionResult{{CertificateNotTrusted, "self-signed certificate", false}}},
		{"tls-failures.log", "plain.test", []sessionResult{{StartTLSNotSupported, "TLS is required, but was not offered by host plain.test[127.0.0.3]", false}}},
		{"tls-failures.log", "tls.test", []sessionResult{{"", "", false}}},
		{"postfix310-tlsrpt.log", "ok.example", []sessionResult{{"", "", true}, {"", "", false}}},
		{"postfix310-tlsrpt.log", "exp.example", []sessionResult{{CertificateExpired, "", true}}},
		{"postfix310-tlsrpt.log", "mis.example", []sessionResult{{CertificateHostMismatch, "", true}}},
		{"postfix310-tlsrpt.log", "self.example", []sessionResult{{ValidationFailure, "self-signed_certificate", true}}},
		{"postfix310-tlsrpt.log", "plain.example", []sessionResult{
			{StartTLSNotSupported, "", true},
			{StartTLSNotSupported, "TLS is required, but was not offered by host mx.plain.example[192.0.2.50]", false}}},
		{"postfix310-tlsrpt.log", "odd.example", []sessionResult{
			{StartTLSNotSupported, "TLS is required, but was not offered by host mx.odd.example[192.0.2.70]", false},
			{StartTLSNotSupported, "TLS is required, but was not offered by host mx.odd.example[192.0.2.70]", false}}},
	} {
		if got := results(parseLog(t, tc.file)[tc.domain]); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s %s: sessions %+v, want %+v", tc.file, tc.domain, got, tc.want)
		}
	}
}

// TestPostfixStatusWins: within one session, Postfix's TLSRPT status is
// the result whatever the rows' own reading, and the first one stands.
func TestPostfixStatusWins(t *testing.T) {
	const mx = "mx.dest.example[192.0.2.1]:25"
	ok := row(0, 1, "AAA", "a@dest.example", mx, "deferred", "Server certificate not verified", tp(true))
	ok.TLSFailure, ok.TLSVerify = true, "num=62:hostname mismatch"
	second := ok
	second.Recipient = "b@dest.example"
	second.TLSRPT = "status=failure, domain=dest.example, receiving_mx=mx.dest.example[192.0.2.1], failure_type=certificate_expired"
	third := second
	third.TLSRPT = "status=failure, domain=dest.example, receiving_mx=mx.dest.example[192.0.2.1], failure_type=dane_required"
	got := results([]delivery.Delivery{ok, second, third})
	want := []sessionResult{{CertificateExpired, "", true}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sessions %+v, want %+v", got, want)
	}
	// Without the status, the verification line decides.
	if got := results([]delivery.Delivery{ok}); !reflect.DeepEqual(got, []sessionResult{{CertificateHostMismatch, "num=62:hostname mismatch", false}}) {
		t.Errorf("sessions %+v", got)
	}
	// A verification line does not make a non-TLS failure a TLS one.
	grey := row(0, 1, "AAA", "a@dest.example", mx, "deferred", "host mx said: 450 4.2.0 Greylisted", tp(true))
	grey.TLSVerify = "untrusted issuer /CN=x"
	if got := results([]delivery.Delivery{grey}); !reflect.DeepEqual(got, []sessionResult{{"", "", false}}) {
		t.Errorf("greylisted over TLS with an untrusted certificate: %+v, want a successful session", got)
	}
}

// TestInForce: the periods of a day from a domain's answer changes.
func TestInForce(t *testing.T) {
	p := func(mx string) Policy { return Policy{Type: PolicySTS, MXHost: []string{mx}} }
	none := Policy{Type: PolicyNoPolicyFound}
	changes := []PolicyPeriod{
		{day.AddDate(0, 0, -3), p("a")},
		{day.Add(6 * time.Hour), p("b")},
		{day.Add(20 * time.Hour), p("c")},
		{day.AddDate(0, 0, 1), p("d")},
	}
	for _, tc := range []struct {
		day     time.Time
		changes []PolicyPeriod
		want    []PolicyPeriod
	}{
		{day.Add(time.Hour), changes, []PolicyPeriod{{day, p("a")}, {day.Add(6 * time.Hour), p("b")}, {day.Add(20 * time.Hour), p("c")}}},
		{day.AddDate(0, 0, -1), changes, []PolicyPeriod{{day.AddDate(0, 0, -1), p("a")}}},
		{day.AddDate(0, 0, 1), changes, []PolicyPeriod{{day.AddDate(0, 0, 1), p("d")}}},
		{day.AddDate(0, 0, -4), changes, []PolicyPeriod{{day.AddDate(0, 0, -4), none}}},
		{day, changes[1:2], []PolicyPeriod{{day, none}, {day.Add(6 * time.Hour), p("b")}}},
		{day, nil, []PolicyPeriod{{day, none}}},
	} {
		if got := InForce(tc.day, tc.changes); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("InForce(%v) = %+v, want %+v", tc.day, got, tc.want)
		}
	}
}

// TestBuildPeriods: sessions count under the policy in force at their
// start; a policy in force twice is one element; a policy without
// sessions is left out; the fetch failure goes to its own time's policy.
func TestBuildPeriods(t *testing.T) {
	in := sampleInput()
	a := Policy{Type: PolicySTS, String: []string{"mx: a"}, MXHost: []string{"a"}}
	b := Policy{Type: PolicyTLSA}
	c := Policy{Type: PolicySTS, MXHost: []string{"c"}}
	in.Periods = []PolicyPeriod{{day, a}, {day.Add(450 * time.Second), b}, {day.Add(650 * time.Second), a}, {day.Add(23 * time.Hour), c}}
	r := Build(in)
	// sampleDeliveries: sessions at 10, 400, 400.5 s (successful), 500,
	// 600 (failed: under b), 700 (plaintext: failed, under a again); the
	// fetch failure at 20 h (a); nothing under c.
	var got []string
	for _, p := range r.Policies {
		got = append(got, string(p.Policy.Type)+" "+p.Policy.Domain+" "+itoa(p.Summary.Successful)+"/"+itoa(p.Summary.Failed))
	}
	want := []string{"sts dest.example 3/2", "tlsa dest.example 0/2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("policies %v, want %v", got, want)
	}
	if tot := r.Totals(); tot != (Summary{3, 4}) {
		t.Errorf("totals %+v", tot)
	}
	if errs := schemaErrors(mustMarshal(t, r)); errs != nil {
		t.Errorf("schema: %v", errs)
	}
	// A session logged (in whole seconds) in the second a policy came
	// into force counts under it.
	in.Periods = []PolicyPeriod{{day, a}, {day.Add(400*time.Second + 300*time.Millisecond), b}}
	got = nil
	for _, p := range Build(in).Policies {
		got = append(got, string(p.Policy.Type)+" "+itoa(p.Summary.Successful)+"/"+itoa(p.Summary.Failed))
	}
	if want := []string{"sts 1/0", "tlsa 2/4"}; !reflect.DeepEqual(got, want) {
		t.Errorf("policies %v, want %v", got, want)
	}
	// No session at all: still one policy, the first.
	in.Deliveries, in.FetchFailure = nil, nil
	if r := Build(in); len(r.Policies) != 1 || r.Policies[0].Policy.Type != PolicySTS || r.Totals() != (Summary{}) {
		t.Errorf("empty day: %+v", r.Policies)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func mustMarshal(t *testing.T, r Report) []byte {
	t.Helper()
	b, err := Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSessionsRelayNone: of the rows that made no connection, only an
// SMTP or LMTP client's DANE policy deferral is a session, without MX host
// or address; postfix/error's "delivery temporarily suspended" repeats
// and other relay=none rows are not.
func TestSessionsRelayNone(t *testing.T) {
	smtp := row(0, 1, "AAA", "a@dest.example", "none", "deferred", "no TLSA records found", nil)
	lmtp := smtp
	lmtp.Process, lmtp.QueueID = "postfix/lmtp", "BBB"
	suspended := smtp
	suspended.Process, suspended.QueueID, suspended.Reason = "postfix/error", "CCC", "delivery temporarily suspended: no TLSA records found"
	refused := smtp
	refused.QueueID, refused.Reason = "DDD", "connect to mx.dest.example[192.0.2.1]:25: Connection refused"
	got := Sessions([]delivery.Delivery{smtp, lmtp, suspended, refused})
	if len(got) != 2 || got[0].Result != DANERequired || got[1].Result != DANERequired || got[0].MXHost != "" || got[0].IP != "" {
		t.Errorf("sessions %+v, want two dane-required without MX host and address", got)
	}
}
