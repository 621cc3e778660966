//go:build linux

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/policyd"
)

// grammarValues are policy values around the edges of what Postfix's TLS
// library accepts. FP is replaced by the "tls" receiver's SHA-256
// certificate fingerprint.
var grammarValues = []string{
	// Accepted by both.
	"may",
	"encrypt",
	"encrypt protocols=>=TLSv1.2",
	"encrypt protocols=!SSLv2:!SSLv3",
	"encrypt protocols=TLSv1.2:TLSv1.3",
	"encrypt protocols=>=TLSv1.2:<=TLSv1.3",
	"encrypt ciphers=high",
	"may ciphers=medium",
	"encrypt exclude=aNULL:3DES",
	"encrypt exclude=RC4:MD5:DES",
	"may exclude=CHACHA20",
	"encrypt servername=hostname",
	"encrypt connection_reuse=no",
	"verify match=nexthop",
	"secure match=nexthop:dot-nexthop",
	"fingerprint match=FP",
	// Refused by us; Postfix complains or sends in plaintext.
	"encrypt exclude=!aNULL",
	"encrypt exclude=+RC4",
	"encrypt exclude=-RC4",
	"encrypt exclude=@STRENGTH",
	"may exclude=aNULL:!RC4",
	"encrypt ciphers=null",
	"verify ciphers=null match=nexthop",
	"may ciphers=null",
	"encrypt protocols=!SSLv2:!SSLv3:!TLSv1:!TLSv1.1:!TLSv1.2:!TLSv1.3",
	"may protocols=!SSLv2:!SSLv3:!TLSv1:!TLSv1.1:!TLSv1.2:!TLSv1.3",
	"encrypt protocols=SSLv3",
	"encrypt protocols=SSLv2:SSLv3",
	"fingerprint",
	"may exclude=ALL",
	"encrypt exclude=ALL",
	"may exclude=DEFAULT",
	"may exclude=HIGH",
	"encrypt exclude=HIGH:MEDIUM",
	"may exclude=COMPLEMENTOFDEFAULT:DEFAULT",
}

// TestGrammarAgainstPostfix serves every value of grammarValues to the
// installed Postfix from a texthash policy table (mailtls is not involved)
// and delivers one message per value to the TLS receiver. Postfix accepts a
// value when the message goes out over TLS on the first attempt. Our
// validator (policyd.ParsePolicy) must accept exactly those, except values
// that mean plaintext: ciphers=null, which OpenSSL shows selects only
// unencrypted suites before TLS 1.3. A refused value therefore either
// makes Postfix defer (its warnings are logged with the verdict) or
// means cleartext; an accepted one never makes Postfix complain.
func TestGrammarAgainstPostfix(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	hosts := map[string]string{}
	var table strings.Builder
	dom := func(i int) string { return fmt.Sprintf("g%d.wild.test", i) } // *.wild.test is in the certificate
	for i := range grammarValues {
		hosts[dom(i)] = string(ReceiverTLS)
	}
	pf := StartPostfix(t, Config{
		PolicyMaps:  "texthash:$config_directory/grammar_policy",
		TrustTestCA: true,
		Hosts:       hosts,
		Files:       map[string]string{"grammar_policy": "# filled in below\n"},
		Main:        map[string]string{"smtp_tls_fingerprint_digest": "sha256"},
	})
	fp := receiverFingerprint(t, pf)
	values := make([]string, len(grammarValues))
	for i, v := range grammarValues {
		values[i] = strings.ReplaceAll(v, "FP", fp)
		fmt.Fprintf(&table, "%s %s\n", dom(i), values[i])
	}
	if err := os.WriteFile(filepath.Join(pf.ConfigDir(), "grammar_policy"), []byte(table.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	pf.Reconfigure(map[string]string{"smtp_tls_loglevel": "1"})

	qids := make([]string, len(values))
	for i := range values {
		qids[i] = pf.Send("sender@e2e.test", "x@"+dom(i), "grammar "+values[i])
	}
	for i, v := range values {
		status, err := pf.WaitLog(ctx, func(l string) bool {
			return strings.Contains(l, qids[i]+": to=") && strings.Contains(l, "status=")
		})
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		tlsUp := false
		var complaints []string
		for _, l := range pf.LogLines() {
			if strings.Contains(l, "TLS connection established to "+dom(i)+"[") {
				tlsUp = true
			}
			if strings.Contains(l, "warning:") && (strings.Contains(l, dom(i)) || strings.Contains(l, "grammar_policy")) {
				complaints = append(complaints, l[strings.Index(l, "warning:"):])
			}
		}
		postfixOK := strings.Contains(status, "status=sent") && tlsUp
		plain := strings.Contains(v, "ciphers=null") && nullGradeIsPlaintext(t, pf)
		_, err = policyd.ParsePolicy(v)
		ours := err == nil
		outcome := status[strings.Index(status, "status="):]
		t.Logf("%q: postfix ok=%v (%s %v), plaintext by OpenSSL=%v; ours ok=%v (%v)", v, postfixOK, outcome, complaints, plain, ours, err)
		if ours != (postfixOK && !plain) {
			t.Errorf("%q: our validator says ok=%v (%v), Postfix says ok=%v: %s %v", v, ours, err, postfixOK, outcome, complaints)
		}
	}
}

// nullGradeIsPlaintext asks OpenSSL what Postfix's null cipher grade
// (tls_null_cipherlist) selects: true when every suite before TLS 1.3 has
// no encryption (Enc=None), that is, a TLS 1.2 peer gets cleartext. The
// TLS receiver speaks TLS 1.3, whose suites ignore the list, so a delivery
// there cannot show it.
func nullGradeIsPlaintext(t *testing.T, pf *Postfix) bool {
	t.Helper()
	list, errOut, err := pf.run(30*time.Second, "postconf", "-c", pf.ConfigDir(), "-h", "tls_null_cipherlist")
	if err != nil {
		t.Fatalf("postconf tls_null_cipherlist: %v %s", err, errOut)
	}
	out, err := exec.Command("openssl", "ciphers", "-v", strings.TrimSpace(list)).Output()
	if err != nil {
		t.Fatalf("openssl ciphers -v %s: %v (install openssl)", list, err)
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || f[1] == "TLSv1.3" {
			continue
		}
		n++
		if f[4] != "Enc=None" {
			return false
		}
	}
	return n > 0
}

// receiverFingerprint is the SHA-256 digest of the "tls" receiver's
// certificate, as Postfix's fingerprint level prints and matches it.
func receiverFingerprint(t *testing.T, pf *Postfix) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(pf.ConfigDir(), "receiver.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatal("receiver.pem: no certificate")
	}
	sum := sha256.Sum256(blk.Bytes)
	hexs := make([]string, len(sum))
	for i, c := range sum {
		hexs[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(hexs, ":")
}
