package e2e

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/testnet"
)

// startPolicyHost serves the MTA-STS policies (domain -> policy text) from
// https://mta-sts.DOMAIN/ on 127.0.N.10:443, one address of pf's
// 127.0.N.0/24, with a certificate from a new test CA, and adds to z, for
// each domain, an MX record naming mx.tls.test (the "tls" receiver), the
// _mta-sts TXT record (id 20261201) and the policy host's address. It
// returns the CA's PEM file, for the daemon's SSL_CERT_FILE.
func startPolicyHost(t *testing.T, pf *Postfix, z *testnet.Zone, policies map[string]string) string {
	t.Helper()
	stsIP := pf.netPfx + "10"
	ca := testnet.NewCA(t)
	var names []string
	for d := range policies {
		names = append(names, "mta-sts."+d)
	}
	leaf := testnet.Leaf(t, ca, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), names...)
	ln, err := net.Listen("tcp", stsIP+":443")
	if err != nil {
		t.Fatalf("policy host %s:443: %v", stsIP, err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, ok := policies[strings.TrimPrefix(r.Host, "mta-sts.")]
			if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, body) //nolint:errcheck // test server
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{leaf}},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go srv.ServeTLS(ln, "", "") //nolint:errcheck // ends at Close
	t.Cleanup(func() { srv.Close() })
	caFile := filepath.Join(t.TempDir(), "policy-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	for d := range policies {
		z.Add(t, d+". 300 IN MX 10 mx.tls.test.", "_mta-sts."+d+". 300 IN TXT \"v=STSv1; id=20261201\"",
			"mta-sts."+d+". 300 IN A "+stsIP)
	}
	z.Add(t, "mx.tls.test. 300 IN A "+pf.Addr(ReceiverTLS))
	return caFile
}

// TestPublishedPolicies runs the daemon with its default sources against a
// real Postfix. Names resolve through a loopback DNS server (testnet) that
// signs the DANE zones (AD bit); the MTA-STS policies come from an HTTPS
// server on 127.0.N.10:443 whose certificate is from a test CA the daemon
// trusts through SSL_CERT_FILE, as Go documents. Postfix trusts the
// receivers' CA (smtp_tls_CAfile) and, with its own DNS off, does no
// MTA-STS itself: mailtls's "secure match=... servername=hostname" is what
// makes it verify. The receiver's certificate names mx.tls.test (among
// ReceiverCertNames), which the enforce policy's "*.tls.test" covers.
func TestPublishedPolicies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const (
		enforce  = "enforce.test"  // mx *.tls.test: matches the receiver's certificate
		mismatch = "mismatch.test" // mx mx.nowhere.test: the certificate does not match
		testingD = "testing.test"  // mode testing: the default
		override = "override.test" // enforce (mismatching), but an override says encrypt
		none     = "none.test"     // publishes nothing
		daneAll  = "dane-all.test" // every MX has validated TLSA records
		daneMix  = "dane-mix.test" // one of two
	)
	hosts := map[string]string{}
	for _, d := range []string{enforce, mismatch, testingD, override, none} {
		hosts[d] = string(ReceiverTLS)
	}
	smap := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	tcp := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	pf := StartPostfix(t, Config{PolicyMaps: "socketmap:inet:" + smap + ":tlspolicy", TrustTestCA: true, Hosts: hosts})

	policies := map[string]string{
		enforce:  "version: STSv1\nmode: enforce\nmx: *.tls.test\nmax_age: 86400\n",
		mismatch: "version: STSv1\nmode: enforce\nmx: mx.nowhere.test\nmax_age: 86400\n",
		testingD: "version: STSv1\nmode: testing\nmx: mx.nowhere.test\nmax_age: 86400\n",
		override: "version: STSv1\nmode: enforce\nmx: mx.nowhere.test\nmax_age: 86400\n",
	}
	z := testnet.NewZone()
	caFile := startPolicyHost(t, pf, z, policies)
	z.Add(t, none+". 300 IN MX 10 mx.tls.test.")
	mxIP := pf.Addr(ReceiverTLS)
	const tlsa = "3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, d := range []string{daneAll, daneMix} {
		z.Sign(d)
		z.Add(t, d+". 300 IN MX 10 mx1."+d+".", "mx1."+d+". 300 IN A "+mxIP, "_25._tcp.mx1."+d+". 300 IN TLSA "+tlsa)
	}
	z.Add(t, daneMix+". 300 IN MX 20 mx2."+daneMix+".", "mx2."+daneMix+". 300 IN A "+mxIP)
	dnsAddr := testnet.StartDNS(t, z)

	m := newMailtlsRun(t, pf.LogPath())
	m.smap, m.tcp = smap, tcp
	m.args = []string{"run", "--db", m.db, "--log", pf.LogPath(), "--socketmap", smap, "--tcp", tcp,
		"--poll", "100ms", "--reload-every", "200ms", "--config", "/dev/null", "--http", "", "--resolver", dnsAddr}
	m.env = append(cleanEnv(), "SSL_CERT_FILE="+caFile)
	m.cli("policy", "set", override, "encrypt")
	m.start()

	// Exactly these answers, over both protocols. A first contact may
	// outlast the 2 s budget on a loaded machine (the default answers
	// meanwhile), so each key is asked until its answer settles.
	const sec = "secure match=.tls.test servername=hostname"
	want := map[string]string{
		enforce:  sec,
		mismatch: "secure match=mx.nowhere.test servername=hostname",
		testingD: "may",
		override: "encrypt",
		none:     "may",
		daneAll:  "dane-only",
		daneMix:  "dane",
	}
	for _, mp := range []string{"socketmap:inet:" + smap + ":tlspolicy", "tcp:" + tcp} {
		for key, w := range want {
			deadline := time.Now().Add(20 * time.Second)
			for {
				out, code := pf.Postmap(key, mp)
				if code == 0 && out == w {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("postmap -q %s %s = %q (exit %d), want %q\nmailtls log:\n%s", key, mp, out, code, w, m.log.String())
				}
				time.Sleep(100 * time.Millisecond) // polling interval
			}
		}
	}
	// TLSRPT attributes on the MTA-STS answer, for the -tlsrpt name only.
	rpt := "socketmap:inet:" + smap + ":tlspolicy-tlsrpt"
	if out, code := pf.Postmap(enforce, rpt); code != 0 || out != sec+" policy_type=sts policy_domain=enforce.test mx_host_pattern=*.tls.test"+
		" { policy_string = version: STSv1 } { policy_string = mode: enforce } { policy_string = mx: *.tls.test } { policy_string = max_age: 86400 }" {
		t.Errorf("postmap -q %s %s = %q (exit %d)", enforce, rpt, out, code)
	}
	for _, key := range []string{override, testingD, none} {
		if out, code := pf.Postmap(key, rpt); code != 0 || out != want[key] {
			t.Errorf("postmap -q %s %s = %q (exit %d), want %q without attributes", key, rpt, out, code, want[key])
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// enforce: delivered, verified against the policy's mx pattern.
	q1 := pf.Send("sender@e2e.test", "alice@"+enforce, "enforce")
	r1 := m.waitRow("enforce", func(r row) bool { return r.QueueID == q1 && r.Status != "" })
	if r1.Status != "sent" || r1.TLS == nil || !*r1.TLS || r1.TLSTrust != "verified" {
		t.Errorf("enforce: %+v, want sent over verified TLS", r1)
	}
	if _, err := pf.WaitLog(ctx, LineContains("Verified TLS connection established to "+enforce)); err != nil {
		t.Errorf("enforce: Postfix logged no verified connection: %v", err)
	}
	// mismatch: the certificate does not match the policy: deferred.
	q2 := pf.Send("sender@e2e.test", "bob@"+mismatch, "mismatch")
	if _, err := pf.WaitLog(ctx, LineContains(q2+": to=<bob@"+mismatch+">", "status=deferred", "Server certificate not verified")); err != nil {
		t.Fatalf("mismatch: no deferral for certificate verification: %v", err)
	}
	r2 := m.waitRow("mismatch", func(r row) bool { return r.QueueID == q2 && r.Status == "deferred" })
	if !strings.HasPrefix(r2.DSN, "4.") {
		t.Errorf("mismatch: %+v, want a 4.x.x deferral", r2)
	}
	// testing: the default, may; delivered over TLS (trusted: Postfix
	// trusts the CA, but may does not check names).
	q3 := pf.Send("sender@e2e.test", "carol@"+testingD, "testing")
	r3 := m.waitRow("testing", func(r row) bool { return r.QueueID == q3 && r.Status != "" })
	if r3.Status != "sent" || r3.TLS == nil || !*r3.TLS || r3.TLSTrust != "trusted" {
		t.Errorf("testing: %+v, want sent with may (trusted)", r3)
	}
	// override: encrypt wins over the enforce policy that would defer it.
	q4 := pf.Send("sender@e2e.test", "dave@"+override, "override")
	r4 := m.waitRow("override", func(r row) bool { return r.QueueID == q4 && r.Status != "" })
	if r4.Status != "sent" || r4.TLS == nil || !*r4.TLS {
		t.Errorf("override: %+v, want sent under the encrypt override", r4)
	}
	if err := ctx.Err(); errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("scenario ran out of time")
	}
	pf.PurgeQueue()
}
