//go:build linux

package e2e

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/testnet"
	"github.com/mailtls/mailtls/tlsrpt"
)

// TestRealTLSRPT: deliveries through a real Postfix to
//   - mismatch.test, whose certificate does not match its MTA-STS policy
//     (enforce, mx: mx.nowhere.test; the daemon answers "secure match=...",
//     Postfix finds a hostname mismatch): certificate-host-mismatch under
//     policy-type sts with the policy's lines;
//   - plain.test, which offers no STARTTLS, under a forced encrypt:
//     starttls-not-supported;
//   - expired.test and untrusted.test under a forced verify, whose
//     certificates have expired and come from a CA Postfix does not
//     trust: certificate-expired and certificate-not-trusted;
//   - tls.test, which succeeds.
//
// tlsrpt show counts one session each (the first message has two
// recipients); tlsrpt send mails two reports through the same Postfix
// (sendmail, pickup, smtp) to a mailbox (smtp-sink -d) and posts two to a
// loopback HTTPS receiver, each equal to show's; a second send sends
// nothing. MAILTLS_E2E_CAPTURE of this test is
// logparse/testdata/real-postfix37-tlsrpt.log.
func TestRealTLSRPT(t *testing.T) {
	parallel(t)
	// The mailbox: smtp-sink dumping each message into a file.
	// (Not t.TempDir: its parent is closed to the postfix user.)
	box, err := os.MkdirTemp("", "mailtls-e2e-box")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(box) })
	pu, err := user.Lookup("postfix")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(pu.Uid)
	gid, _ := strconv.Atoi(pu.Gid)
	if err := os.Chown(box, uid, gid); err != nil {
		t.Fatal(err)
	}
	sinkAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	sink := exec.Command("smtp-sink", "-u", "postfix", "-d", box+"/%M.", sinkAddr, "10")
	sink.Env = cleanEnv()
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Process.Kill(); _ = sink.Wait() })
	waitFor(t, "smtp-sink listening", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", sinkAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	const mismatch = "mismatch.test"
	smap := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	pf := StartPostfix(t, Config{
		PolicyMaps:  "socketmap:inet:" + smap + ":tlspolicy",
		TrustTestCA: true, // the "tls" receiver's certificate is trusted: only its name is wrong
		Hosts:       map[string]string{mismatch: string(ReceiverTLS)},
		Main: map[string]string{
			// rcv.test is the mailbox; the others keep their harness routes.
			"transport_maps": "inline:{ rcv.test=smtp:[" + strings.Replace(sinkAddr, ":", "]:", 1) + " }",
			// Deferred mail is not retried during the test: each
			// destination has exactly the sessions the test makes.
			"minimal_backoff_time": "1h", "maximal_backoff_time": "1h", "queue_run_delay": "1h",
		},
	})

	// The HTTPS receiver, trusted by tlsrpt send through SSL_CERT_FILE.
	var mu sync.Mutex
	var posts [][]byte
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != "application/tlsrpt+gzip" {
			http.Error(w, "type", http.StatusUnsupportedMediaType)
			return
		}
		mu.Lock()
		posts = append(posts, b)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	// DNS: mismatch.test's MTA-STS policy (served on loopback HTTPS, its
	// CA trusted by the daemon) and the _smtp._tls records.
	const mismatchPolicy = "version: STSv1\nmode: enforce\nmx: mx.nowhere.test\nmax_age: 86400\n"
	z := testnet.NewZone()
	policyCA := startPolicyHost(t, pf, z, map[string]string{mismatch: mismatchPolicy})
	z.Add(t,
		`_smtp._tls.mismatch.test. 60 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@rcv.test,`+srv.URL+`/v1"`,
		`_smtp._tls.plain.test. 60 IN TXT "v=TLSRPTv1; rua=mailto:reports@rcv.test"`,
		`_smtp._tls.tls.test. 60 IN TXT "v=TLSRPTv1; rua=`+srv.URL+`/tls"`)
	dnsAddr := testnet.StartDNS(t, z)

	m := newMailtlsRun(t, pf.LogPath())
	m.smap = smap
	m.args = []string{"run", "--db", m.db, "--log", pf.LogPath(), "--socketmap", smap, "--tcp", m.tcp,
		"--poll", "100ms", "--reload-every", "200ms", "--config", "/dev/null", "--http", "", "--resolver", dnsAddr}
	m.env = append(cleanEnv(), "SSL_CERT_FILE="+policyCA)
	m.start()
	m.cli("policy", "set", "plain.test", "encrypt")
	m.cli("policy", "set", "expired.test", "verify")
	m.cli("policy", "set", "untrusted.test", "verify")
	// A first contact may outlast the lookup budget (the default answers
	// meanwhile): each key is asked until its answer settles.
	for d, want := range map[string]string{mismatch: "secure match=mx.nowhere.test servername=hostname",
		"plain.test": "encrypt", "expired.test": "verify", "untrusted.test": "verify"} {
		waitFor(t, d+" served", 20*time.Second, func() bool {
			out, _ := pf.Postmap(d, "socketmap:inet:"+smap+":tlspolicy")
			return out == want
		})
	}
	sendmail := filepath.Join(t.TempDir(), "sendmail")
	if err := os.WriteFile(sendmail, []byte("#!/bin/sh\nexec /usr/sbin/sendmail -C "+pf.ConfigDir()+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	qM := pf.Send(from, "u1@"+mismatch+",u2@"+mismatch, "tlsrpt mismatch")
	qP := pf.Send(from, "u@plain.test", "tlsrpt plain")
	qT := pf.Send(from, "u@tls.test", "tlsrpt tls")
	qE := pf.Send(from, "u@expired.test", "tlsrpt expired")
	qU := pf.Send(from, "u@untrusted.test", "tlsrpt untrusted")
	for _, w := range []struct{ q, status, rcpt string }{{qM, "deferred", "u1@" + mismatch}, {qM, "deferred", "u2@" + mismatch},
		{qP, "deferred", "u@plain.test"}, {qT, "sent", "u@tls.test"}, {qE, "deferred", "u@expired.test"}, {qU, "deferred", "u@untrusted.test"}} {
		m.waitRow(w.rcpt, func(r row) bool { return r.QueueID == w.q && r.Status == w.status && r.Recipient == w.rcpt })
	}

	day := time.Now().UTC().Format("2006-01-02") // the test runs within one UTC day, bar a midnight crossing
	common := []string{"--date", day, "--tlsrpt-org", "E2E Org", "--tlsrpt-contact", "tlsrpt@sender.e2e.test", "--config", "/dev/null"}
	shown := map[string]tlsrpt.Report{}
	dec := json.NewDecoder(strings.NewReader(m.cli(append([]string{"tlsrpt", "show", "--format", "json"}, common...)...)))
	for dec.More() {
		var r tlsrpt.Report
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		shown[r.Policies[0].Policy.Domain] = r
	}
	stsPolicy := tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: mismatch, MXHost: []string{"mx.nowhere.test"},
		String: []string{"version: STSv1", "mode: enforce", "mx: mx.nowhere.test", "max_age: 86400"}}
	for d, w := range map[string]struct {
		ok, fail int64
		rt       tlsrpt.ResultType
		rcv      Receiver
	}{
		mismatch:         {0, 1, tlsrpt.CertificateHostMismatch, ReceiverTLS},
		"plain.test":     {0, 1, tlsrpt.StartTLSNotSupported, ReceiverPlain},
		"expired.test":   {0, 1, tlsrpt.CertificateExpired, ReceiverExpired},
		"untrusted.test": {0, 1, tlsrpt.CertificateNotTrusted, ReceiverUntrusted},
		"tls.test":       {1, 0, "", ""},
	} {
		r, ok := shown[d]
		if !ok {
			t.Errorf("show has no report for %s: %v", d, shown)
			continue
		}
		if len(r.Policies) != 1 {
			t.Errorf("%s: %d policies, want 1: %+v", d, len(r.Policies), r.Policies)
			continue
		}
		p := r.Policies[0]
		wantPolicy := tlsrpt.Policy{Type: tlsrpt.PolicyNoPolicyFound, Domain: d}
		if d == mismatch {
			wantPolicy = stsPolicy
		}
		if p.Summary != (tlsrpt.Summary{Successful: w.ok, Failed: w.fail}) || !reflect.DeepEqual(p.Policy, wantPolicy) {
			t.Errorf("%s: %+v %+v, want %+v with %d successful, %d failed", d, p.Policy, p.Summary, wantPolicy, w.ok, w.fail)
		}
		if w.rt != "" && (len(p.FailureDetails) != 1 || p.FailureDetails[0].ResultType != w.rt || p.FailureDetails[0].ReceivingIP != pf.Addr(w.rcv) ||
			p.FailureDetails[0].FailedSessionCount != 1) {
			t.Errorf("%s: failure details %+v, want one session %s from %s", d, p.FailureDetails, w.rt, pf.Addr(w.rcv))
		}
	}
	if t.Failed() {
		t.Logf("Postfix log:\n%s", strings.Join(pf.LogLines(), "\n"))
	}

	send := func() string {
		t.Helper()
		cmd := exec.Command(m.bin, append([]string{"tlsrpt", "send", "--db", m.db, "--resolver", dnsAddr, "--sendmail", sendmail}, common...)...)
		cmd.Env = append(cleanEnv(), "SSL_CERT_FILE="+caFile)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("tlsrpt send: %v\n%s\n%s", err, out.String(), errb.String())
		}
		return out.String()
	}
	out := send()
	boxed := func() []string { f, _ := filepath.Glob(filepath.Join(box, "*")); return f }
	waitFor(t, "two reports in the mailbox", 60*time.Second, func() bool { return len(boxed()) >= 2 })
	got := map[string]bool{}
	for _, f := range boxed() {
		msg, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rep := reportOfMessage(t, msg)
		d := rep.Policies[0].Policy.Domain
		got[d] = true
		if !reflect.DeepEqual(rep, shown[d]) {
			t.Errorf("mailed report of %s differs from show:\n%+v\n%+v", d, rep, shown[d])
		}
	}
	mu.Lock()
	nPosts := len(posts)
	for _, p := range posts {
		zr, err := gzip.NewReader(bytes.NewReader(p))
		if err != nil {
			t.Fatal(err)
		}
		var rep tlsrpt.Report
		if err := json.NewDecoder(zr).Decode(&rep); err != nil {
			t.Fatal(err)
		}
		d := rep.Policies[0].Policy.Domain
		got["https "+d] = true
		if !reflect.DeepEqual(rep, shown[d]) {
			t.Errorf("posted report of %s differs from show:\n%+v\n%+v", d, rep, shown[d])
		}
	}
	mu.Unlock()
	if !got[mismatch] || !got["plain.test"] || !got["https "+mismatch] || !got["https tls.test"] || nPosts != 2 || len(boxed()) != 2 {
		t.Errorf("delivered: %v (%d posts, %d mails); send said:\n%s", got, nPosts, len(boxed()), out)
	}

	// A second send sends nothing: every rua is done.
	out = send()
	if strings.Contains(out, " sent") || strings.Count(out, "done") != 4 {
		t.Errorf("second send:\n%s", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(posts) != 2 || len(boxed()) != 2 {
		t.Errorf("after the second send: %d posts, %d mails", len(posts), len(boxed()))
	}
}

// reportOfMessage reads the gzip'd report out of a mailed report, as
// dumped by smtp-sink (its X- pseudo-headers go first).
func reportOfMessage(t *testing.T, msg []byte) tlsrpt.Report {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type %q", m.Header.Get("Content-Type"))
	}
	if !strings.HasPrefix(m.Header.Get("Subject"), "Report Domain: ") {
		t.Errorf("Subject %q", m.Header.Get("Subject"))
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("no report attached: %v", err)
		}
		if !strings.HasPrefix(p.Header.Get("Content-Type"), "application/tlsrpt+gzip") {
			continue
		}
		zr, err := gzip.NewReader(base64.NewDecoder(base64.StdEncoding, p))
		if err != nil {
			t.Fatal(err)
		}
		var rep tlsrpt.Report
		if err := json.NewDecoder(zr).Decode(&rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
}
