package logparse

import "testing"

// TestErrorDeliveries: after a TLS failure Postfix may suspend the
// destination, and error(8) then defers the other messages to it with the
// reason of the failure. Those are deliveries (relay=none, TLS unknown);
// they are TLS failures only when the reason names TLS (issue #14 item 3).
func TestErrorDeliveries(t *testing.T) {
	c := NewCorrelator(goldenOptions(""))
	ds := feedStrings(c,
		"2026-11-28T07:00:00.000000+00:00 edge postfix/smtp[4400]: 1A2B3C4D5E: to=<a@enc.example>, relay=mx.enc.example[192.0.2.40]:25, delay=0.2, delays=0/0/0.2/0, dsn=4.7.4, status=deferred (TLS is required, but was not offered by host mx.enc.example[192.0.2.40])",
		"2026-11-28T07:00:01.000000+00:00 edge postfix/error[4404]: 2B3C4D5E6F: to=<b@enc.example>, relay=none, delay=0.01, delays=0/0/0/0.01, dsn=4.7.4, status=deferred (delivery temporarily suspended: TLS is required, but was not offered by host mx.enc.example[192.0.2.40])",
		"2026-11-28T07:00:02.000000+00:00 edge postfix/error[4404]: 3C4D5E6F70: to=<c@down.example>, relay=none, delay=0.01, delays=0/0/0/0.01, dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to mx.down.example[192.0.2.41]:25: Connection refused)",
		"2026-11-28T07:00:03.000000+00:00 edge postfix-out/error[4405]: 4D5E6F7081: to=<d@gone.example>, relay=none, delay=0.01, delays=0/0/0/0.01, dsn=5.0.0, status=bounced (mail for gone.example is not accepted)",
		"2026-11-28T07:00:03.500000+00:00 edge postfix/retry[4407]: 4D5E6F7082: to=<f@enc.example>, relay=none, delay=0.01, delays=0/0/0/0.01, dsn=4.7.4, status=deferred (delivery temporarily suspended: TLS is required, but was not offered by host mx.enc.example[192.0.2.40])",
		"2026-11-28T07:00:04.000000+00:00 edge postfix/errorx[4406]: 5E6F708192: to=<e@x.example>, relay=none, delay=0.01, delays=0/0/0/0.01, dsn=5.0.0, status=bounced (x)",
	)
	if len(ds) != 5 {
		t.Fatalf("%d deliveries, want 5: %+v", len(ds), ds)
	}
	for i, want := range []struct {
		process, rcpt string
		tlsFailure    bool
	}{
		{"postfix/smtp", "a@enc.example", true},
		{"postfix/error", "b@enc.example", true},
		{"postfix/error", "c@down.example", false},
		{"postfix-out/error", "d@gone.example", false},
		{"postfix/retry", "f@enc.example", true},
	} {
		d := ds[i]
		if d.Process != want.process || d.Recipient != want.rcpt || d.TLSFailure != want.tlsFailure {
			t.Errorf("delivery %d: %s %s tls_failure=%v, want %s %s %v", i, d.Process, d.Recipient, d.TLSFailure, want.process, want.rcpt, want.tlsFailure)
		}
		if i > 0 && (d.Relay != "none" || d.TLS != nil) {
			t.Errorf("delivery %d: relay %q TLS %v, want none and unknown", i, d.Relay, d.TLS)
		}
	}
}
