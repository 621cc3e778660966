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

// TestRealTLSRPT: deliveries through a real Postfix to a destination that
// fails a forced verify (hostname mismatch), one without STARTTLS under a
// forced encrypt, and one that succeeds; tlsrpt show counts one session
// each (the first message has two recipients); tlsrpt send mails two
// reports through the same Postfix (sendmail, pickup, smtp) to a mailbox
// (smtp-sink -d) and posts one to a loopback HTTPS receiver, each equal to
// show's; a second send sends nothing.
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

	smap := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	pf := StartPostfix(t, Config{
		PolicyMaps: "socketmap:inet:" + smap + ":tlspolicy",
		Main: map[string]string{
			// rcv.test is the mailbox; the others keep their harness routes.
			"transport_maps": "inline:{ rcv.test=smtp:[" + strings.Replace(sinkAddr, ":", "]:", 1) + " }",
			// Deferred mail is not retried during the test: each
			// destination has exactly the sessions the test makes.
			"minimal_backoff_time": "1h", "maximal_backoff_time": "1h", "queue_run_delay": "1h",
		},
	})
	m := newMailtlsRun(t, pf.LogPath())
	m.smap = smap
	m.args = []string{"run", "--db", m.db, "--log", pf.LogPath(), "--socketmap", smap, "--tcp", m.tcp,
		"--poll", "100ms", "--reload-every", "200ms", "--config", "/dev/null", "--http", ""}
	m.start()
	m.cli("policy", "set", "verify.test", "verify")
	m.cli("policy", "set", "plain.test", "encrypt")
	for d, want := range map[string]string{"verify.test": "verify", "plain.test": "encrypt"} {
		waitFor(t, d+" served", 10*time.Second, func() bool {
			out, _ := pf.Postmap(d, "socketmap:inet:"+smap+":tlspolicy")
			return out == want
		})
	}

	// The HTTPS receiver, trusted by the mailtls process through SSL_CERT_FILE.
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
	z := testnet.NewZone()
	z.Add(t,
		`_smtp._tls.verify.test. 60 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@rcv.test,`+srv.URL+`/v1"`,
		`_smtp._tls.plain.test. 60 IN TXT "v=TLSRPTv1; rua=mailto:reports@rcv.test"`,
		`_smtp._tls.tls.test. 60 IN TXT "v=TLSRPTv1; rua=`+srv.URL+`/tls"`)
	dnsAddr := testnet.StartDNS(t, z)
	sendmail := filepath.Join(t.TempDir(), "sendmail")
	if err := os.WriteFile(sendmail, []byte("#!/bin/sh\nexec /usr/sbin/sendmail -C "+pf.ConfigDir()+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	qV := pf.Send(from, "u1@verify.test,u2@verify.test", "tlsrpt verify")
	qP := pf.Send(from, "u@plain.test", "tlsrpt plain")
	qT := pf.Send(from, "u@tls.test", "tlsrpt tls")
	for _, w := range []struct{ q, status, rcpt string }{{qV, "deferred", "u1@verify.test"}, {qV, "deferred", "u2@verify.test"},
		{qP, "deferred", "u@plain.test"}, {qT, "sent", "u@tls.test"}} {
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
	for d, w := range map[string]struct {
		ok, fail int64
		rt       tlsrpt.ResultType
	}{"verify.test": {0, 1, tlsrpt.ValidationFailure}, "plain.test": {0, 1, tlsrpt.StartTLSNotSupported}, "tls.test": {1, 0, ""}} {
		r, ok := shown[d]
		if !ok {
			t.Errorf("show has no report for %s: %v", d, shown)
			continue
		}
		p := r.Policies[0]
		if p.Summary != (tlsrpt.Summary{Successful: w.ok, Failed: w.fail}) || p.Policy.Type != tlsrpt.PolicyNoPolicyFound {
			t.Errorf("%s: %+v %+v, want %d successful, %d failed", d, p.Policy, p.Summary, w.ok, w.fail)
		}
		if w.rt != "" && (len(p.FailureDetails) != 1 || p.FailureDetails[0].ResultType != w.rt || p.FailureDetails[0].ReceivingIP != pf.Addr(map[string]Receiver{"verify.test": ReceiverTLS, "plain.test": ReceiverPlain}[d])) {
			t.Errorf("%s: failure details %+v, want one %s", d, p.FailureDetails, w.rt)
		}
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
	if !got["verify.test"] || !got["plain.test"] || !got["https verify.test"] || !got["https tls.test"] || nPosts != 2 || len(boxed()) != 2 {
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
