//go:build linux

package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/testnet"
	"github.com/mailtls/mailtls/tlsrpt"
)

// receiverTLSA311 is the "3 1 1" TLSA data (DANE-EE, SPKI, SHA-256) of the
// "tls" receiver's certificate.
func receiverTLSA311(t *testing.T) string {
	t.Helper()
	certs, err := testCerts()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(certs.chainPEM)
	if b == nil {
		t.Fatal("receiver certificate: no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(s[:])
}

// TestRealDANE: DANE through a real Postfix 3.7, which resolves through a
// loopback DNS server that sets the AD bit for the signed zones
// (Config.DNS: a private /etc/resolv.conf with trust-ad,
// smtp_dns_support_level=dnssec). mailtls resolves through the same
// server. Every destination's MX is mx.DOMAIN, the "tls" receiver:
//   - dane-ok.test: TLSA 3 1 1 of the receiver's key; mailtls answers
//     dane-only, Postfix delivers over Verified TLS;
//   - tlsa-bad.test: TLSA 3 1 1 of another key; mailtls answers
//     dane-only, Postfix defers ("num=65:no matching DANE TLSA
//     records"): tlsa-invalid;
//   - no-tlsa.test (signed, no TLSA), insecure.test (not signed) and
//     tlsa-fail.test (signed, the TLSA query SERVFAILs) under a dane-only
//     override: Postfix defers before connecting ("no TLSA records
//     found", "non DNSSEC destination": dane-required; "TLSA lookup
//     error": dnssec-invalid);
//   - ta-ok.test, ta-name.test, ta-bad.test: DANE-TA (2 0 1), published
//     (dane-only): the test CA with the receiver's name as MX (Verified),
//     the test CA with a name not in the certificate ("num=62:hostname
//     mismatch": certificate-host-mismatch), another certificate ("CA
//     certificate verification failed ... num=65": tlsa-invalid);
//   - tlsa-unusable.test: a TLSA record of an unknown matching type
//     (3 1 7) under a dane-only override: Postfix connects, warns "all
//     TLSA records unusable" and defers: tlsa-invalid.
//
// tlsrpt show counts one session each. MAILTLS_E2E_CAPTURE of this test is
// logparse/testdata/real-postfix37-dane.log.
func TestRealDANE(t *testing.T) {
	parallel(t)
	const (
		daneOK   = "dane-ok.test"
		mismatch = "tlsa-bad.test"
		noTLSA   = "no-tlsa.test"
		insecure = "insecure.test"
		lookErr  = "tlsa-fail.test"
		unusable = "tlsa-unusable.test"
		// DANE-TA (2 0 1: the test CA's certificate), which also checks
		// the name: MX mx.tls.test is in the receiver's certificate,
		// mx.ta-name.test is not.
		taOK   = "ta-ok.test"
		taName = "ta-name.test"
		taBad  = "ta-bad.test" // MX x.wild.test (*.wild.test), 2 0 1 of another certificate
	)
	domains := []string{daneOK, mismatch, noTLSA, insecure, lookErr, unusable, taOK, taName, taBad}
	z := testnet.NewZone()
	smap := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	pf := StartPostfix(t, Config{
		PolicyMaps: "socketmap:inet:" + smap + ":tlspolicy",
		DNS:        z,
		Main: map[string]string{
			// Deferred mail is not retried during the test: each
			// destination has exactly the sessions the test makes.
			"minimal_backoff_time": "1h", "maximal_backoff_time": "1h", "queue_run_delay": "1h",
		},
	})
	ip := pf.Addr(ReceiverTLS)
	mxOf := map[string]string{taOK: "mx.tls.test", taBad: "x.wild.test"}
	for _, d := range domains {
		if d != insecure {
			z.Sign(d)
		}
		if mxOf[d] == "" {
			mxOf[d] = "mx." + d
		}
		z.Add(t, d+". 300 IN MX 10 "+mxOf[d]+".", mxOf[d]+". 300 IN A "+ip)
	}
	z.Sign("tls.test")
	z.Sign("wild.test")
	good, ca, bad := receiverTLSA311(t), caTLSA201(t), strings.Repeat("ab", 32)
	z.Add(t, "_25._tcp.mx."+daneOK+". 300 IN TLSA 3 1 1 "+good,
		"_25._tcp.mx."+mismatch+". 300 IN TLSA 3 1 1 "+bad,
		"_25._tcp.mx."+lookErr+". 300 IN TLSA 3 1 1 "+good,
		"_25._tcp.mx."+unusable+". 300 IN TLSA 3 1 7 "+good,
		"_25._tcp.mx.tls.test. 300 IN TLSA 2 0 1 "+ca,
		"_25._tcp.mx."+taName+". 300 IN TLSA 2 0 1 "+ca,
		"_25._tcp.x.wild.test. 300 IN TLSA 2 0 1 "+bad)
	z.ServFail("_25._tcp.mx."+lookErr, true)

	m := newMailtlsRun(t, pf.LogPath())
	m.smap = smap
	m.args = []string{"run", "--db", m.db, "--log", pf.LogPath(), "--socketmap", smap, "--tcp", m.tcp,
		"--poll", "100ms", "--reload-every", "200ms", "--config", "/dev/null", "--http", "", "--resolver", pf.DNSAddr()}
	m.start()
	for _, d := range []string{noTLSA, insecure, lookErr, unusable} {
		m.cli("policy", "set", d, "dane-only")
	}
	// The published answers and the overrides, through Postfix's own
	// client. A first contact may outlast the lookup budget (the default
	// answers meanwhile): each key is asked until its answer settles.
	for _, d := range domains {
		var out string
		var code int
		waitFor(t, d+" answered dane-only", 20*time.Second, func() bool {
			out, code = pf.Postmap(d, "socketmap:inet:"+smap+":tlspolicy")
			return code == 0 && out == "dane-only"
		})
	}

	q := map[string]string{}
	for _, d := range domains {
		q[d] = pf.Send(from, "u@"+d, "dane "+d)
	}
	for _, d := range domains {
		status := "deferred"
		if d == daneOK || d == taOK {
			status = "sent"
		}
		r := m.waitRow(d, func(r row) bool { return r.QueueID == q[d] && r.Status != "" })
		if r.Status != status || status == "sent" && r.TLSTrust != "verified" {
			t.Errorf("%s: %+v, want %s", d, r, status)
		}
	}
	// Postfix's own words, independently of the code under test.
	for d, want := range map[string]string{
		daneOK:   "Verified TLS connection established to mx." + daneOK + "[",
		mismatch: "server certificate verification failed for mx." + mismatch + "[" + ip + "]:25: num=65:no matching DANE TLSA records",
		noTLSA:   q[noTLSA] + ": to=<u@" + noTLSA + ">, relay=none",
		insecure: q[insecure] + ": to=<u@" + insecure + ">, relay=none",
		lookErr:  q[lookErr] + ": to=<u@" + lookErr + ">, relay=none",
		unusable: "warning: mx." + unusable + "[" + ip + "]:25: all TLSA records unusable",
		taOK:     "Verified TLS connection established to mx.tls.test[",
		taName:   "server certificate verification failed for mx." + taName + "[" + ip + "]:25: num=62:hostname mismatch",
		taBad:    "CA certificate verification failed for x.wild.test[" + ip + "]:25: num=65:no matching DANE TLSA records",
	} {
		if _, err := pf.WaitLog(context.Background(), LineContains(want)); err != nil {
			t.Errorf("%s: no line %q: %v", d, want, err)
		}
	}

	day := time.Now().UTC().Format("2006-01-02") // the test runs within one UTC day, bar a midnight crossing
	out := m.cli("tlsrpt", "show", "--format", "json", "--date", day, "--tlsrpt-org", "E2E Org",
		"--tlsrpt-contact", "tlsrpt@sender.e2e.test", "--config", "/dev/null")
	shown := map[string]tlsrpt.Report{}
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var r tlsrpt.Report
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		shown[r.Policies[0].Policy.Domain] = r
	}
	tlsaPolicy := func(d, rr string) tlsrpt.Policy {
		return tlsrpt.Policy{Type: tlsrpt.PolicyTLSA, Domain: d, MXHost: []string{mxOf[d]}, String: []string{rr}}
	}
	for d, w := range map[string]struct {
		policy   tlsrpt.Policy
		ok, fail int64
		rt       tlsrpt.ResultType
		mx, ip   string
	}{
		daneOK:   {tlsaPolicy(daneOK, "3 1 1 "+good), 1, 0, "", "", ""},
		mismatch: {tlsaPolicy(mismatch, "3 1 1 "+bad), 0, 1, tlsrpt.TLSAInvalid, "mx." + mismatch, ip},
		taOK:     {tlsaPolicy(taOK, "2 0 1 "+ca), 1, 0, "", "", ""},
		taName:   {tlsaPolicy(taName, "2 0 1 "+ca), 0, 1, tlsrpt.CertificateHostMismatch, "mx." + taName, ip},
		taBad:    {tlsaPolicy(taBad, "2 0 1 "+bad), 0, 1, tlsrpt.TLSAInvalid, "x.wild.test", ip},
		// Overrides: no published policy. Postfix did not connect
		// (relay=none), so no MX and no address is known.
		noTLSA:   {tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, Domain: noTLSA}, 0, 1, tlsrpt.DANERequired, "", ""},
		insecure: {tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, Domain: insecure}, 0, 1, tlsrpt.DANERequired, "", ""},
		lookErr:  {tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, Domain: lookErr}, 0, 1, tlsrpt.DNSSECInvalid, "", ""},
		unusable: {tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, Domain: unusable}, 0, 1, tlsrpt.TLSAInvalid, "mx." + unusable, ip},
	} {
		r, ok := shown[d]
		if !ok || len(r.Policies) != 1 {
			t.Errorf("show: no single-policy report for %s: %+v", d, r)
			continue
		}
		p := r.Policies[0]
		if p.Summary != (tlsrpt.Summary{Successful: w.ok, Failed: w.fail}) || !reflect.DeepEqual(p.Policy, w.policy) {
			t.Errorf("%s: %+v %+v, want %+v with %d successful, %d failed", d, p.Policy, p.Summary, w.policy, w.ok, w.fail)
		}
		if w.rt != "" && (len(p.FailureDetails) != 1 || p.FailureDetails[0].ResultType != w.rt ||
			p.FailureDetails[0].ReceivingMXHostname != w.mx || p.FailureDetails[0].ReceivingIP != w.ip || p.FailureDetails[0].FailedSessionCount != 1) {
			t.Errorf("%s: failure details %+v, want one session %s at %q [%s]", d, p.FailureDetails, w.rt, w.mx, w.ip)
		}
	}
	if t.Failed() {
		t.Logf("tlsrpt show:\n%s\nPostfix log:\n%s", out, strings.Join(pf.LogLines(), "\n"))
	}
	pf.PurgeQueue()
}

// caTLSA201 is the "2 0 1" TLSA data (DANE-TA, full certificate, SHA-256)
// of the test CA that issued the receivers' certificates.
func caTLSA201(t *testing.T) string {
	t.Helper()
	certs, err := testCerts()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(certs.caPEM)
	if b == nil {
		t.Fatal("test CA: no PEM block")
	}
	s := sha256.Sum256(b.Bytes)
	return hex.EncodeToString(s[:])
}
