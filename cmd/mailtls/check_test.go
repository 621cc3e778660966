package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/store"
)

// checkDNS answers every query for names under check.example from a fixed
// table: MX records pointing at 127.0.0.1.
func checkDNS(t *testing.T) string {
	t.Helper()
	rrs := map[string][]string{
		"check.example. MX":    {"check.example. 60 IN MX 10 mx1.check.example."},
		"mx1.check.example. A": {"mx1.check.example. 60 IN A 127.0.0.1"},
		"plain.example. MX":    {"plain.example. 60 IN MX 10 mx1.plain.example."},
		"mx1.plain.example. A": {"mx1.plain.example. 60 IN A 127.0.0.1"},
		"nullmx.example. MX":   {"nullmx.example. 60 IN MX 0 ."},
	}
	exists := map[string]bool{}
	for k := range rrs {
		exists[strings.Fields(k)[0]] = true
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		for _, s := range rrs[strings.ToLower(q.Name)+" "+dns.TypeToString[q.Qtype]] {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Errorf("bad RR %q: %v", s, err)
				continue
			}
			m.Answer = append(m.Answer, rr)
		}
		if !exists[strings.ToLower(q.Name)] {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: h}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe() //nolint:errcheck // ends at Shutdown
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// checkSMTP is a receiving SMTP server with STARTTLS and a self-signed
// certificate, so the best level without trusted roots is encrypt. It
// returns its port.
func checkSMTP(t *testing.T, starttls bool) int {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx1.check.example"},
		DNSNames: []string{"mx1.check.example"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				var conn net.Conn = c
				conn.Write([]byte("220 mx1.check.example ESMTP\r\n"))
				br := bufio.NewReader(conn)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
					case strings.HasPrefix(cmd, "EHLO"):
						ext := ""
						if starttls {
							ext = "250-STARTTLS\r\n"
						}
						conn.Write([]byte("250-mx1.check.example\r\n" + ext + "250 8BITMIME\r\n"))
					case cmd == "STARTTLS" && starttls:
						conn.Write([]byte("220 go ahead\r\n"))
						tc := tls.Server(c, conf)
						if tc.Handshake() != nil {
							return
						}
						conn, br = tc, bufio.NewReader(tc)
					case cmd == "QUIT":
						conn.Write([]byte("221 bye\r\n"))
						return
					default:
						t.Errorf("unexpected SMTP command %q", cmd)
						conn.Write([]byte("502 no\r\n"))
					}
				}
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().(*net.TCPAddr).Port
}

func runCheckCLI(t *testing.T, db string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		if k == "MAILTLS_DB" {
			return db
		}
		return ""
	}
	code := Run(context.Background(), append([]string{"mailtls", "check"}, args...),
		env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: getenv})
	return out.String(), errb.String(), code
}

func TestCheckCommand(t *testing.T) {
	resolver := checkDNS(t)
	port := strconv.Itoa(checkSMTP(t, true))
	db := filepath.Join(t.TempDir(), "mailtls.db")
	common := []string{"--resolver", resolver, "--port", port, "--timeout", "5s", "--helo", "test.mailtls", "--allow-private"}

	// Our history: one encrypted and one plaintext delivery in the window.
	st, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	plainAt := time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Second)
	_, err = st.AddDeliveries(context.Background(), []delivery.Delivery{
		{Time: plainAt.Add(-time.Hour), QueueID: "A1", Recipient: "a@check.example", Domain: "check.example", Relay: "mx1.check.example[127.0.0.1]:25",
			Status: "sent", DSN: "2.0.0", TLS: &yes, TLSTrust: "untrusted", TLSProtocol: "TLSv1.3", Key: strings.Repeat("a1", 32)},
		{Time: plainAt, QueueID: "A2", Recipient: "b@check.example", Domain: "check.example", Relay: "mx1.check.example[127.0.0.1]:25",
			Status: "sent", DSN: "2.0.0", TLS: &no, Key: strings.Repeat("b2", 32)},
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	out, errs, code := runCheckCLI(t, db, append(common, "--format", "json", "check.example")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var got struct {
		Domain         string `json:"domain"`
		Recommendation struct {
			Level   string   `json:"level"`
			Policy  string   `json:"policy"`
			Reasons []string `json:"reasons"`
		} `json:"recommendation"`
		MX []struct {
			Host  string `json:"host"`
			Probe struct {
				STARTTLS bool `json:"starttls"`
				TLS      *struct {
					SelfSigned bool `json:"self_signed"`
				} `json:"tls"`
			} `json:"probe"`
		} `json:"mx"`
		History *struct {
			Deliveries    int64      `json:"deliveries"`
			Plaintext     int64      `json:"plaintext"`
			LastPlaintext *time.Time `json:"last_plaintext"`
		} `json:"history"`
		CurrentOverride *string `json:"current_override"`
		Applied         bool    `json:"applied"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got.Domain != "check.example" || got.Recommendation.Level != "encrypt" || got.Recommendation.Policy != "encrypt" ||
		len(got.MX) != 1 || !got.MX[0].Probe.STARTTLS || got.MX[0].Probe.TLS == nil || !got.MX[0].Probe.TLS.SelfSigned {
		t.Errorf("report: %s", out)
	}
	if h := got.History; h == nil || h.Deliveries != 2 || h.Plaintext != 1 || h.LastPlaintext == nil || !h.LastPlaintext.Equal(plainAt) {
		t.Errorf("history: %s", out)
	}
	if got.CurrentOverride != nil || got.Applied {
		t.Errorf("override before --apply: %s", out)
	}

	out, errs, code = runCheckCLI(t, db, append(common, "check.example")...)
	if code != 0 || !strings.Contains(out, "Recommendation: encrypt") || !strings.Contains(out, "self-signed") ||
		!strings.Contains(out, "To apply: mailtls policy set check.example encrypt") || !strings.Contains(out, "last plaintext") {
		t.Errorf("table (exit %d, %s):\n%s", code, errs, out)
	}

	out, errs, code = runCheckCLI(t, db, append(common, "--apply", "check.example")...)
	if code != 0 || !strings.Contains(out, "Applied: override check.example -> encrypt") {
		t.Errorf("--apply (exit %d, %s):\n%s", code, errs, out)
	}
	st, err = store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	ovs, err := st.Overrides(context.Background())
	st.Close()
	if err != nil || len(ovs) != 1 || ovs[0].Key != "check.example" || ovs[0].Policy != "encrypt" {
		t.Errorf("overrides after --apply: %+v, %v", ovs, err)
	}
	out, _, code = runCheckCLI(t, db, append(common, "--apply", "check.example")...)
	if code != 0 || !strings.Contains(out, "Nothing applied: the override is already encrypt") {
		t.Errorf("second --apply (exit %d):\n%s", code, out)
	}

	// Null MX: no recommendation, and --apply changes nothing.
	out, _, code = runCheckCLI(t, db, append(common, "--apply", "nullmx.example")...)
	if code != 0 || !strings.Contains(out, "Recommendation: none") || !strings.Contains(out, "Nothing applied: there is no recommendation") {
		t.Errorf("null MX (exit %d):\n%s", code, out)
	}
}

func TestCheckCommandNoSTARTTLS(t *testing.T) {
	resolver := checkDNS(t)
	port := strconv.Itoa(checkSMTP(t, false))
	db := filepath.Join(t.TempDir(), "mailtls.db")
	out, errs, code := runCheckCLI(t, db, "--resolver", resolver, "--port", port, "--timeout", "5s", "--allow-private", "--apply", "plain.example")
	if code != 0 || !strings.Contains(out, "Recommendation: may") ||
		!strings.Contains(out, "mx1.plain.example does not offer STARTTLS: encrypt would defer mail routed to it") ||
		!strings.Contains(out, "Nothing applied: may is the default") {
		t.Errorf("exit %d, %s:\n%s", code, errs, out)
	}
}

func setOverride(t *testing.T, db, key, policy string) {
	t.Helper()
	st, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.SetOverride(context.Background(), store.Override{Key: key, Policy: policy}, "test"); err != nil {
		t.Fatal(err)
	}
}

func overridePolicy(t *testing.T, db, key string) string {
	t.Helper()
	st, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ovs, err := st.Overrides(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ovs {
		if o.Key == key {
			return o.Policy
		}
	}
	return ""
}

// issue #14: a probe that sees a weaker server (a transient certificate
// problem, or someone on the path) must not replace a stronger override
// unless the operator says --force.
func TestCheckApplyNeverLowers(t *testing.T) {
	resolver := checkDNS(t)
	port := strconv.Itoa(checkSMTP(t, true)) // self-signed: recommends encrypt
	common := []string{"--resolver", resolver, "--port", port, "--timeout", "5s", "--helo", "test.mailtls", "--allow-private", "--apply"}
	for _, tc := range []struct {
		current string
		lowers  bool
	}{
		{"secure match=.check.example", true},
		{"verify", true},
		{"dane-only", true},
		{"dane", true}, // not above encrypt, not below: unsure, so --force
		{"encrypt protocols=>=TLSv1.3", true},
		{"may", false},
		{"none", false},
	} {
		db := filepath.Join(t.TempDir(), "mailtls.db")
		setOverride(t, db, "check.example", tc.current)
		out, errs, code := runCheckCLI(t, db, append(common, "check.example")...)
		if !tc.lowers {
			want := "Applied: override check.example " + tc.current + " -> encrypt"
			if code != 0 || !strings.Contains(out, want) || overridePolicy(t, db, "check.example") != "encrypt" {
				t.Errorf("raise from %q: exit %d, stderr %q, want %q in:\n%s", tc.current, code, errs, want, out)
			}
			continue
		}
		want := "not applied: encrypt could weaken TLS for check.example: the override is " + tc.current +
			" (to replace it: --force, or mailtls policy set check.example encrypt)"
		if code != exitFailure || strings.TrimSpace(errs) != "mailtls: "+want || strings.Count(errs, "\n") != 1 ||
			!strings.Contains(out, "Recommendation: encrypt") || strings.Contains(out, "Applied") {
			t.Errorf("lower from %q: exit %d, stderr %q (want %q), stdout:\n%s", tc.current, code, errs, want, out)
		}
		if got := overridePolicy(t, db, "check.example"); got != tc.current {
			t.Errorf("lower from %q without --force: override is now %q", tc.current, got)
		}
		// Without --apply, check does not suggest re-running with it.
		out, _, code = runCheckCLI(t, db, append(slices.Clone(common[:len(common)-1]), "check.example")...)
		if hint := "The override " + tc.current + " stays: encrypt could weaken TLS (re-run with --apply --force to replace it anyway)"; code != 0 ||
			!strings.Contains(out, hint) || strings.Contains(out, "To apply") {
			t.Errorf("no --apply, override %q: exit %d, want %q in:\n%s", tc.current, code, hint, out)
		}
		// JSON says applied: false and fails the same way.
		out, errs, code = runCheckCLI(t, db, append(common, "--format", "json", "check.example")...)
		if code != exitFailure || !strings.Contains(errs, want) || !strings.Contains(out, `"applied": false`) {
			t.Errorf("json lower from %q: exit %d, stderr %q:\n%s", tc.current, code, errs, out)
		}
		out, errs, code = runCheckCLI(t, db, append(common, "--force", "check.example")...)
		want = "Applied: override check.example " + tc.current + " -> encrypt (lowered: --force)"
		if code != 0 || !strings.Contains(out, want) || overridePolicy(t, db, "check.example") != "encrypt" {
			t.Errorf("--force from %q: exit %d, stderr %q, want %q in:\n%s", tc.current, code, errs, want, out)
		}
	}
	_, errs, code := runCheckCLI(t, filepath.Join(t.TempDir(), "mailtls.db"), "--resolver", resolver, "--force", "check.example")
	if code != exitUsage || !strings.Contains(errs, "--force only goes with --apply") {
		t.Errorf("--force without --apply: exit %d, %q", code, errs)
	}
}

// Without --allow-private, check does not connect to the fake MX on
// 127.0.0.1 and says why in one line.
func TestCheckCommandPublicOnly(t *testing.T) {
	resolver := checkDNS(t)
	port := strconv.Itoa(checkSMTP(t, true))
	db := filepath.Join(t.TempDir(), "mailtls.db")
	out, errs, code := runCheckCLI(t, db, "--resolver", resolver, "--port", port, "--timeout", "5s", "--apply", "check.example")
	want := "  ! mx1.check.example: not probed: its only address 127.0.0.1 (loopback) is not public (--allow-private probes it)\n"
	if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "Recommendation: may") ||
		strings.Contains(out, "self-signed") || overridePolicy(t, db, "check.example") != "" {
		t.Errorf("exit %d, stderr %q, want %q in:\n%s", code, errs, want, out)
	}
}

func TestCheckCommandUsage(t *testing.T) {
	db := filepath.Join(t.TempDir(), "mailtls.db")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "exactly one DOMAIN"},
		{[]string{"a.example", "b.example"}, "exactly one DOMAIN"},
		{[]string{"bad domain"}, "invalid input"},
		{[]string{"--port", "0", "a.example"}, "--port"},
		{[]string{"--timeout", "soon", "a.example"}, "--timeout"},
		{[]string{"--timeout", "100ms", "a.example"}, "--timeout"},
		{[]string{"--helo", "a b", "a.example"}, "--helo"},
		{[]string{"--format", "csv", "a.example"}, "--format"},
		{[]string{"--resolver", "not a resolver", "a.example"}, "resolver"},
	} {
		_, errs, code := runCheckCLI(t, db, tc.args...)
		if code != exitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("check %q: exit %d, stderr %q; want exit %d with %q", tc.args, code, errs, exitUsage, tc.want)
		}
	}
}
