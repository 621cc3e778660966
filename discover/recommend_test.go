package discover

import (
	"strings"
	"testing"
)

// Reports built by hand cover the ladder's corners that need servers
// which cannot be reached or hosts without addresses.
func TestRecommendEdges(t *testing.T) {
	verified := func(host string) MXReport {
		return MXReport{Host: host, Addresses: []string{"192.0.2.1"}, Probe: Probe{Connected: true, STARTTLS: true,
			TLS: &TLSResult{ChainVerified: true, NameMatch: true}}}
	}
	untrusted := func(host string) MXReport {
		m := verified(host)
		m.Probe.TLS = &TLSResult{VerifyError: "self-signed certificate", NameMatch: true}
		return m
	}
	dane := func(m MXReport) MXReport {
		m.AddressesDNSSEC, m.TLSADNSSEC, m.DANEMatch = true, true, true
		m.TLSA = []TLSARecord{{Usage: 3, Selector: 1, MatchingType: 1, Usable: true, Matches: true}}
		return m
	}
	unreachable := MXReport{Host: "mx9.example", Addresses: []string{"192.0.2.9"},
		Probe: Probe{FailedStep: StepConnect, Error: "cannot connect: 192.0.2.9:25: connection refused"}}
	noAddr := MXReport{Host: "gone.example", AddressError: "no A or AAAA records"}
	starttlsRejected := MXReport{Host: "mx5.example", Addresses: []string{"192.0.2.5"},
		Probe: Probe{Connected: true, STARTTLS: true, FailedStep: StepSTARTTLS, Error: "STARTTLS rejected: 454 TLS not available"}}

	tests := []struct {
		name    string
		r       Report
		level   string
		reasons []string
	}{
		{"host without address is skipped", Report{Domain: "example", MX: []MXReport{verified("mx1.example"), noAddr}},
			"verify", []string{"gone.example has no address (no A or AAAA records): Postfix skips it"}},
		{"no host has an address", Report{Domain: "example", MX: []MXReport{noAddr}},
			"", []string{"no MX host of example has an address (gone.example: no A or AAAA records)"}},
		{"implicit MX without address", Report{Domain: "example", ImplicitMX: true, MX: []MXReport{{Host: "example", AddressError: "no A or AAAA records"}}},
			"", []string{"example has no MX record and no usable address of its own (example: no A or AAAA records)"}},
		{"unreachable MX blocks mandatory TLS", Report{Domain: "example", MX: []MXReport{verified("mx1.example"), unreachable}},
			"may", []string{"mx9.example could not be probed (connect: cannot connect: 192.0.2.9:25: connection refused): cannot tell whether encrypt would work"}},
		{"STARTTLS rejected", Report{Domain: "example", MX: []MXReport{starttlsRejected}},
			"may", []string{"mx5.example offers STARTTLS but TLS failed (STARTTLS rejected: 454 TLS not available): encrypt would defer"}},
		{"encrypt ranks above partial dane", Report{Domain: "example", MXDNSSEC: true, MX: []MXReport{dane(verified("mx1.example")), untrusted("mx2.example")}},
			"encrypt", []string{"mx2.example has no TLSA records: dane-only would defer"}},
		{"all dane but MX unsigned", Report{Domain: "example", MX: []MXReport{dane(verified("mx1.example"))}},
			"verify", []string{"MX records of example are not DNSSEC-validated"}},
		{"PKIX-only TLSA", Report{Domain: "example", MXDNSSEC: true, MX: []MXReport{func() MXReport {
			m := dane(untrusted("mx1.example"))
			m.TLSA = []TLSARecord{{Usage: 1, Selector: 1, MatchingType: 1}}
			m.DANEMatch = false
			return m
		}()}}, "encrypt", []string{"PKIX usages 0/1"}},
		{"null MX", Report{Domain: "example", NullMX: true}, "", []string{"null MX"}},
		{"MX lookup failed", Report{Domain: "example", Errors: []string{"MX lookup: discover: DNS lookup failed: example MX: SERVFAIL from 127.0.0.1:53"}},
			"", []string{"SERVFAIL"}},
	}
	for _, tc := range tests {
		rec := Recommend(&tc.r)
		if rec.Level != tc.level || (tc.level == "") != (rec.Policy == "") {
			t.Errorf("%s: level %q policy %q, want %q; reasons:\n  %s", tc.name, rec.Level, rec.Policy, tc.level, strings.Join(rec.Reasons, "\n  "))
		}
		for _, want := range tc.reasons {
			found := false
			for _, r := range rec.Reasons {
				found = found || strings.Contains(r, want)
			}
			if !found {
				t.Errorf("%s: no reason contains %q:\n  %s", tc.name, want, strings.Join(rec.Reasons, "\n  "))
			}
		}
	}
}
