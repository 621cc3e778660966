package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/servetest"
	"github.com/mailtls/mailtls/internal/testnet"
)

const testTLSA = "3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestServePublishedDANE: with --sources override,dane and a loopback
// resolver, the real Postfix client gets dane-only for a destination whose
// MX hosts all have validated TLSA records, dane for a mixed one, the
// override where one exists, and the default otherwise; lookup shows the
// source and evidence, from the daemon's stored cache and resolved now.
func TestServePublishedDANE(t *testing.T) {
	z := testnet.NewZone()
	for _, d := range []string{"all.example", "mixed.example", "forced.example"} {
		z.Sign(d)
		z.Add(t, d+". 300 IN MX 10 mx1."+d+".", "mx1."+d+". 300 IN A 127.0.0.1", "_25._tcp.mx1."+d+". 300 IN TLSA "+testTLSA)
	}
	z.Add(t, "mixed.example. 300 IN MX 20 mx2.mixed.example.", "mx2.mixed.example. 300 IN A 127.0.0.1")
	dnsAddr := testnet.StartDNS(t, z)

	c := newCLI(t)
	c.ok("policy", "set", "forced.example", "encrypt")
	d := startServe(t, c, "--sources", "override,dane", "--resolver", dnsAddr)
	for _, m := range []string{"socketmap:inet:" + d.socketmap + ":tlspolicy", "tcp:" + d.tcp} {
		for key, want := range map[string]string{
			"all.example":    "dane-only",
			"mixed.example":  "dane",
			"forced.example": "encrypt",
			"plain.example":  "may",
		} {
			// First contact may outlast the 2 s budget on a loaded machine:
			// then the default answers and the next lookup has the result.
			eventually(t, 20*time.Second, "postmap -q "+key+" "+m, func() (bool, string) {
				got, code := servetest.PostmapQ(t, key, m)
				return code == 0 && got == want, got
			})
		}
	}

	// lookup reads what the daemon stored.
	out := c.ok("lookup", "--sources", "override,dane", "all.example")
	if !strings.HasPrefix(out, "all.example  dane-only  (dane: published by the destination") ||
		!strings.Contains(out, "mx mx1.all.example: TLSA "+testTLSA+", authenticated true, usable true") {
		t.Errorf("lookup all.example:\n%s", out)
	}
	var js map[string]any
	if err := json.Unmarshal([]byte(c.ok("lookup", "--sources", "override,dane", "--format", "json", "mixed.example")), &js); err != nil {
		t.Fatal(err)
	}
	if js["source"] != "dane" || js["answer"] != "OK dane" || js["published"] == nil {
		t.Errorf("lookup --format json mixed.example: %v", js)
	}
	out = c.ok("lookup", "--sources", "override,dane", "forced.example")
	if !strings.Contains(out, "exact override forced.example") || strings.Contains(out, "published") {
		t.Errorf("lookup forced.example:\n%s", out)
	}
	// Resolved now, not from the cache.
	out = c.ok("lookup", "--sources", "override,dane", "--resolve", "--resolver", dnsAddr, "new.example")
	if !strings.Contains(out, "new.example  may  (default") || !strings.Contains(out, "published: nothing applies") {
		t.Errorf("lookup --resolve new.example:\n%s", out)
	}
	if out := c.ok("lookup", "--sources", "override", "all.example"); strings.Contains(out, "dane") {
		t.Errorf("lookup with --sources override:\n%s", out)
	}
}

// TestServeDefaultSources: without --sources the daemon consults all three
// sources (override,dane,mta-sts), as README says: a destination with
// validated TLSA records gets dane-only, an override still wins, and
// --sources override turns the published sources off.
func TestServeDefaultSources(t *testing.T) {
	z := testnet.NewZone()
	z.Sign("all.example")
	z.Add(t, "all.example. 300 IN MX 10 mx1.all.example.", "mx1.all.example. 300 IN A 127.0.0.1", "_25._tcp.mx1.all.example. 300 IN TLSA "+testTLSA)
	dnsAddr := testnet.StartDNS(t, z)
	c := newCLI(t)
	c.ok("policy", "set", "forced.example", "encrypt")
	d := startServe(t, c, "--resolver", dnsAddr)
	m := "socketmap:inet:" + d.socketmap + ":tlspolicy"
	eventually(t, 20*time.Second, "postmap -q all.example "+m, func() (bool, string) {
		got, code := servetest.PostmapQ(t, "all.example", m)
		return code == 0 && got == "dane-only", got
	})
	if got, code := servetest.PostmapQ(t, "forced.example", m); code != 0 || got != "encrypt" {
		t.Errorf("forced.example: %q (exit %d), want the override encrypt", got, code)
	}
	off := startServe(t, c, "--resolver", dnsAddr, "--sources", "override")
	if got, code := servetest.PostmapQ(t, "all.example", "socketmap:inet:"+off.socketmap+":tlspolicy"); code != 0 || got != "may" {
		t.Errorf("--sources override: all.example %q (exit %d), want the default may", got, code)
	}
}

// TestServeResolverSilent: with a resolver that never answers, the daemon
// starts, and the first lookup of a new destination gets the default once
// --resolve-timeout runs out, never a temporary error, over both
// protocols.
func TestServeResolverSilent(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // bound, never read
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c := newCLI(t)
	d := startServe(t, c, "--resolver", pc.LocalAddr().String(), "--resolve-timeout", "300ms")
	for i, m := range []string{"socketmap:inet:" + d.socketmap + ":tlspolicy", "tcp:" + d.tcp} {
		key := fmt.Sprintf("silent%d.example", i)
		if got, code := servetest.PostmapQ(t, key, m); code != 0 || got != "may" {
			t.Errorf("%s %s: %q (exit %d), want the default may", key, m, got, code)
		}
	}
}

// TestServeTLSRPT: through the real Postfix client, the map name
// tlspolicy-tlsrpt adds no TLSRPT attributes to a DANE answer (Postfix
// builds a DANE report's policy itself; the MTA-STS attributes are checked
// end to end in e2e TestPublishedPolicies, which can serve a policy over
// HTTPS with a trusted test CA), nor to an override or the default, and
// tlsrpt-attributes = yes in the config file is accepted on tcp_table too.
func TestServeTLSRPT(t *testing.T) {
	z := testnet.NewZone()
	z.Sign("all.example")
	z.Add(t, "all.example. 300 IN MX 10 mx1.all.example.", "mx1.all.example. 300 IN A 127.0.0.1", "_25._tcp.mx1.all.example. 300 IN TLSA "+testTLSA)
	dnsAddr := testnet.StartDNS(t, z)
	c := newCLI(t)
	c.ok("policy", "set", "forced.example", "encrypt")
	attrs := "dane-only"
	d := startServe(t, c, "--resolver", dnsAddr)
	rpt := "socketmap:inet:" + d.socketmap + ":tlspolicy-tlsrpt"
	eventually(t, 20*time.Second, "postmap -q all.example "+rpt, func() (bool, string) {
		got, code := servetest.PostmapQ(t, "all.example", rpt)
		return code == 0 && got == attrs, got
	})
	for key, want := range map[string]string{"forced.example": "encrypt", "plain.example": "may"} {
		if got, code := servetest.PostmapQ(t, key, rpt); code != 0 || got != want {
			t.Errorf("%s %s: %q (exit %d), want %q", rpt, key, got, code, want)
		}
	}
	for _, m := range []string{"socketmap:inet:" + d.socketmap + ":tlspolicy", "tcp:" + d.tcp} {
		if got, code := servetest.PostmapQ(t, "all.example", m); code != 0 || got != "dane-only" {
			t.Errorf("%s all.example: %q (exit %d), want dane-only without attributes", m, got, code)
		}
	}

	conf := filepath.Join(t.TempDir(), "mailtls.conf")
	if err := os.WriteFile(conf, []byte("tlsrpt-attributes = yes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	all := startServe(t, c, "--resolver", dnsAddr, "--config", conf)
	eventually(t, 20*time.Second, "postmap -q all.example tcp:"+all.tcp, func() (bool, string) {
		got, code := servetest.PostmapQ(t, "all.example", "tcp:"+all.tcp)
		return code == 0 && got == attrs, got
	})
	if got, code := servetest.PostmapQ(t, "forced.example", "tcp:"+all.tcp); code != 0 || got != "encrypt" {
		t.Errorf("tlsrpt-attributes = yes: forced.example %q (exit %d), want the bare override", got, code)
	}
}
