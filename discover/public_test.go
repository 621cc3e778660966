package discover

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNonPublic(t *testing.T) {
	tests := []struct{ addr, kind string }{
		{"127.0.0.1", "loopback"},
		{"127.8.9.10", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"10.1.2.3", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.254", "private"},
		{"192.168.1.1", "private"},
		{"fc00::1", "private"},
		{"fd12:3456::1", "private"},
		{"169.254.1.1", "link-local"},
		{"fe80::1", "link-local"},
		{"100.64.0.1", "shared (CGNAT)"},
		{"100.127.255.254", "shared (CGNAT)"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"0.1.2.3", "this-network"},
		{"224.0.0.1", "multicast"},
		{"ff02::1", "multicast"},
		{"192.0.2.10", "documentation"},
		{"198.51.100.7", "documentation"},
		{"203.0.113.9", "documentation"},
		{"2001:db8::25", "documentation"},
		{"3fff::25", "documentation"},
		{"198.18.0.1", "benchmarking"},
		{"240.0.0.1", "reserved"},
		{"255.255.255.255", "reserved"},
		{"192.0.0.8", "IETF protocol assignments"},
		{"100::1", "discard-only"},
		// Public.
		{"8.8.8.8", ""},
		{"172.32.0.1", ""},
		{"100.128.0.1", ""},
		{"192.0.3.1", ""},
		{"2a00:1450:4001:80b::201a", ""},
		{"::ffff:8.8.8.8", ""},
	}
	for _, tt := range tests {
		if got := NonPublic(netip.MustParseAddr(tt.addr)); got != tt.kind {
			t.Errorf("NonPublic(%s) = %q, want %q", tt.addr, got, tt.kind)
		}
	}
	if got := NonPublic(netip.Addr{}); got == "" {
		t.Error("the zero Addr is public")
	}
}

// dialRecorder is a DialSMTP that records every address it is asked for
// and connects to the test server of the MX, whatever the address.
type dialRecorder struct {
	e     *testEnv
	mu    sync.Mutex
	addrs []string
}

func (d *dialRecorder) dial(ctx context.Context, mx, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.addrs = append(d.addrs, addr)
	d.mu.Unlock()
	return d.e.router.dial(ctx, mx, net.JoinHostPort("127.0.0.1", smtpPort))
}

// Without AllowPrivate, check never connects to a non-public address: an
// MX with only such addresses is reported as not probed, with the reason,
// and one with public addresses too is probed on those only.
func TestCheckPublicOnly(t *testing.T) {
	e := newTestEnv(t)
	e.zone.add(t, "private.example. 300 IN MX 10 mx1.verify.example.",
		"mixed.example. 300 IN MX 10 mx1.mixed.example.",
		"mx1.mixed.example. 300 IN A 10.1.2.3", "mx1.mixed.example. 300 IN A 8.8.8.8",
		"mx1.mixed.example. 300 IN AAAA ::1")
	e.router.route("mx1.mixed.example", startSMTP(t, smtpNormal, nil))

	d := &dialRecorder{e: e}
	c := e.checker(10 * time.Second)
	c.AllowPrivate = false
	c.DialSMTP = d.dial
	r, err := c.Check(context.Background(), "private.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.addrs) != 0 {
		t.Errorf("dialled %v for an MX at 127.0.0.1", d.addrs)
	}
	p := r.MX[0].Probe
	if p.FailedStep != StepAddress || p.Error != "not probed: its only address 127.0.0.1 (loopback) is not public" || p.Connected {
		t.Errorf("probe: %+v", p)
	}
	if r.Recommendation.Level != "may" || !hasReason(r, "mx1.verify.example was not probed: its only address 127.0.0.1 (loopback) is not public") {
		t.Errorf("recommendation: %+v", r.Recommendation)
	}

	r, err = c.Check(context.Background(), "mixed.example")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(d.addrs, " ") != "8.8.8.8:2525" {
		t.Errorf("dialled %v, want only the public address 8.8.8.8:2525", d.addrs)
	}
	m := r.MX[0]
	if !m.Probe.Connected || strings.Join(m.NotProbed, ", ") != "10.1.2.3 (private), ::1 (loopback)" {
		t.Errorf("mixed MX: probe %+v, not probed %q", m.Probe, m.NotProbed)
	}

	// The MTA-STS policy host is not fetched from a loopback address either.
	d.addrs = nil
	r, err = c.Check(context.Background(), "sts.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.addrs) != 0 || r.MTASTS == nil || r.MTASTS.Policy != nil ||
		!strings.Contains(r.MTASTS.PolicyError, "mta-sts.sts.example not fetched: none of its addresses is public: 127.0.0.1 (loopback)") {
		t.Errorf("MTA-STS: dialled %v, %+v", d.addrs, r.MTASTS)
	}

	// With AllowPrivate the same MX is probed.
	c.AllowPrivate = true
	d.addrs = nil
	r, err = c.Check(context.Background(), "private.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.addrs) != 1 || !r.MX[0].Probe.Connected || r.Recommendation.Level != "verify" {
		t.Errorf("AllowPrivate: dialled %v, probe %+v, recommendation %+v", d.addrs, r.MX[0].Probe, r.Recommendation)
	}
}
