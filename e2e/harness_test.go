//go:build linux

package e2e

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const from = "sender@sender.e2e.test"

// parallel runs the test in parallel with the others (each instance has its
// own slot), except while capturing logs, so that the captured instances
// follow each other in time.
func parallel(t *testing.T) {
	if os.Getenv("MAILTLS_E2E_CAPTURE") == "" {
		t.Parallel()
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wait returns the first log line containing all of subs, or fails.
func wait(ctx context.Context, t *testing.T, p *Postfix, subs ...string) string {
	t.Helper()
	line, err := p.WaitLog(ctx, LineContains(subs...))
	if err != nil {
		t.Fatalf("waiting for %q: %v", subs, err)
	}
	return line
}

var tagRe = regexp.MustCompile(` ([a-z0-9/_-]+)\[(\d+)\]: `)

// procOf returns "tag[pid]" of a log line.
func procOf(t *testing.T, line string) string {
	t.Helper()
	m := tagRe.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no tag[pid] in %q", line)
	}
	return m[1] + "[" + m[2] + "]"
}

// sessionTLS returns the line that opened the session of delivery line
// sent: the closest earlier line of the same process that is not another
// recipient of the same message.
func sessionTLS(t *testing.T, lines []string, sent, queueID string) string {
	t.Helper()
	i := slices.Index(lines, sent)
	if i < 0 {
		t.Fatalf("line not in log: %q", sent)
	}
	proc := procOf(t, sent)
	for j := i - 1; j >= 0; j-- {
		l := lines[j]
		if !strings.Contains(l, " "+proc+": ") || strings.Contains(l, " "+queueID+": to=<") {
			continue
		}
		return l
	}
	return ""
}

func count(lines []string, pred func(string) bool) int {
	n := 0
	for _, l := range lines {
		if pred(l) {
			n++
		}
	}
	return n
}

// No policy map: tls.test goes out with opportunistic TLS, plain.test in
// plaintext, and a three-recipient message logs one TLS line.
func TestSmokeOpportunistic(t *testing.T) {
	parallel(t)
	p := StartPostfix(t, Config{})
	ctx := testCtx(t)

	q1 := p.Send(from, "alice@tls.test", "opportunistic TLS")
	sent1 := wait(ctx, t, p, "postfix/smtp[", q1+": to=<alice@tls.test>, relay=tls.test[", "dsn=2.0.0, status=sent")
	q2 := p.Send(from, "bob@plain.test", "plaintext")
	sent2 := wait(ctx, t, p, "postfix/smtp[", q2+": to=<bob@plain.test>, relay=plain.test[", "dsn=2.0.0, status=sent")
	q3 := p.Send(from, "a@tls.test,b@tls.test,c@tls.test", "three recipients")
	var sent3 []string
	for _, r := range []string{"a", "b", "c"} {
		sent3 = append(sent3, wait(ctx, t, p, "postfix/smtp[", q3+": to=<"+r+"@tls.test>, relay=tls.test[", "status=sent"))
	}
	if err := p.WaitQueueEmpty(ctx); err != nil {
		t.Fatal(err)
	}

	lines := p.LogLines()
	untrusted := "Untrusted TLS connection established to tls.test[" + p.Addr(ReceiverTLS) + "]:25: TLSv1.3 with cipher "
	if got := sessionTLS(t, lines, sent1, q1); !strings.Contains(got, untrusted) {
		t.Errorf("line before %q = %q, want the TLS summary %q", sent1, got, untrusted)
	}
	for _, s := range sent3 {
		if got := sessionTLS(t, lines, s, q3); !strings.Contains(got, untrusted) {
			t.Errorf("line before %q = %q, want the TLS summary", s, got)
		}
		if procOf(t, s) != procOf(t, sent3[0]) {
			t.Errorf("recipients of %s delivered by different processes: %q, %q", q3, s, sent3[0])
		}
	}
	if n := count(lines, LineContains("postfix/smtp[", "TLS connection established to tls.test[")); n != 2 {
		t.Errorf("%d TLS summary lines for tls.test, want 2 (one per session)", n)
	}
	if n := count(lines, LineContains("TLS connection", "plain.test[")); n != 0 {
		t.Errorf("%d TLS lines for plain.test, want 0", n)
	}
	if procOf(t, sent1) == procOf(t, sent2) {
		t.Logf("TLS then plaintext delivery by the same process %s", procOf(t, sent1))
	} else {
		t.Logf("TLS and plaintext deliveries by different processes (%s, %s)", procOf(t, sent1), procOf(t, sent2))
	}
}

// A texthash policy map: protocol floor against a TLSv1-only receiver
// (defer, then plaintext fallback), encrypt against a plaintext receiver,
// verify with a hostname mismatch and with a matching certificate.
func TestSmokePolicy(t *testing.T) {
	parallel(t)
	policy := "tls1.test may protocols=>=TLSv1.2\n" +
		"plain.test encrypt\n" +
		"verify.test verify\n" +
		"tls.test verify\n" +
		".wild.test encrypt\n"
	p := StartPostfix(t, Config{
		TrustTestCA: true,
		PolicyMaps:  "texthash:$config_directory/tls_policy",
		Files:       map[string]string{"tls_policy": policy},
	})
	ctx := testCtx(t)

	table := "texthash:" + p.ConfigDir() + "/tls_policy"
	if out, code := p.Postmap("tls1.test", table); out != "may protocols=>=TLSv1.2" || code != 0 {
		t.Errorf("postmap -q tls1.test = %q, exit %d; want the policy, exit 0", out, code)
	}
	if out, code := p.Postmap("other.test", table); out != "" || code != 1 {
		t.Errorf("postmap -q other.test = %q, exit %d; want nothing, exit 1", out, code)
	}

	qTLS1 := p.Send(from, "u@tls1.test", "protocol floor")
	qPlain := p.Send(from, "u@plain.test", "encrypt required")
	qVerify := p.Send(from, "u@verify.test", "verify mismatch")
	qTLS := p.Send(from, "u@tls.test", "verified")
	qWild := p.Send(from, "u@sub.wild.test", "wildcard encrypt")

	wait(ctx, t, p, "postfix/smtp[", "SSL_connect error to tls1.test["+p.Addr(ReceiverTLS1)+"]:25: ")
	wait(ctx, t, p, "postfix/smtp[", "warning: TLS library problem: ")
	wait(ctx, t, p, qTLS1+": to=<u@tls1.test>, relay=tls1.test[", "dsn=4.7.5, status=deferred (Cannot start TLS: handshake failure)")
	wait(ctx, t, p, qPlain+": to=<u@plain.test>, relay=plain.test[",
		"dsn=4.7.4, status=deferred (TLS is required, but was not offered by host plain.test["+p.Addr(ReceiverPlain)+"])")
	wait(ctx, t, p, "postfix/smtp[", "certificate verification failed for verify.test[", "hostname mismatch")
	wait(ctx, t, p, qVerify+": to=<u@verify.test>, relay=verify.test[", "dsn=4.7.5, status=deferred (Server certificate not verified)")
	wait(ctx, t, p, "postfix/smtp[", "Verified TLS connection established to tls.test[")
	wait(ctx, t, p, qTLS+": to=<u@tls.test>, relay=tls.test[", "status=sent")
	wait(ctx, t, p, "postfix/smtp[", "Trusted TLS connection established to sub.wild.test[")
	wait(ctx, t, p, qWild+": to=<u@sub.wild.test>, relay=sub.wild.test[", "status=sent")

	// The retry, once the message has waited minimal_backoff_time, goes
	// out in plaintext after another failed handshake.
	fallback := wait(ctx, t, p, qTLS1+": to=<u@tls1.test>, relay=tls1.test[", "dsn=2.0.0, status=sent")
	lines := p.LogLines()
	if got := sessionTLS(t, lines, fallback, qTLS1); !strings.Contains(got, qTLS1+": Cannot start TLS: handshake failure") {
		t.Errorf("line before the fallback delivery = %q, want %q", got, "Cannot start TLS: handshake failure")
	}
	if n := count(lines, LineContains("TLS connection established to tls1.test[")); n != 0 {
		t.Errorf("%d TLS summary lines for tls1.test, want 0", n)
	}

	var ids []string
	for _, e := range p.Queue() {
		ids = append(ids, e.QueueID)
	}
	if !slices.Contains(ids, qPlain) || !slices.Contains(ids, qVerify) || slices.Contains(ids, qTLS1) {
		t.Errorf("queue = %v, want %s and %s but not %s", ids, qPlain, qVerify, qTLS1)
	}
	p.PurgeQueue()
	if err := p.WaitQueueEmpty(ctx); err != nil {
		t.Fatal(err)
	}
}

// TLS connection reuse through tlsproxy, the postfix-out syslog_name and
// an LMTP delivery.
func TestSmokeReuseAndTransports(t *testing.T) {
	parallel(t)
	p := StartPostfix(t, Config{
		ConnectionReuse: true,
		TrustTestCA:     true,
		Main: map[string]string{
			"smtp_connection_cache_destinations": "tls.test",
			"smtp_connection_cache_time_limit":   "10s",
		},
	})
	ctx := testCtx(t)

	q1 := p.Send(from, "one@tls.test", "first")
	wait(ctx, t, p, "postfix/smtp[", q1+": to=<one@tls.test>, relay=tls.test[", "status=sent")
	q2 := p.Send(from, "two@tls.test", "second, reused")
	sent2 := wait(ctx, t, p, "postfix/smtp[", q2+": to=<two@tls.test>, relay=tls.test[", "status=sent")
	wait(ctx, t, p, "postfix/tlsproxy[", "Trusted TLS connection established to tls.test[")
	wait(ctx, t, p, "postfix/smtp[", "Trusted TLS connection established to tls.test[")
	reused := wait(ctx, t, p, "postfix/smtp[", "Trusted TLS connection reused to tls.test[")
	if got := sessionTLS(t, p.LogLines(), sent2, q2); got != reused {
		t.Errorf("line before %q = %q, want the reuse line %q", sent2, got, reused)
	}

	q3 := p.Send(from, "e@out.test", "postfix-out")
	wait(ctx, t, p, "postfix-out/smtp[", "TLS connection established to out.test[")
	wait(ctx, t, p, "postfix-out/smtp[", q3+": to=<e@out.test>, relay=out.test[", "status=sent")

	q4 := p.Send(from, "f@lmtp.test", "lmtp")
	wait(ctx, t, p, "postfix/lmtp[", q4+": to=<f@lmtp.test>, relay=lmtp.test["+p.Addr(ReceiverLMTP)+"]:24", "status=sent")
	if err := p.WaitQueueEmpty(ctx); err != nil {
		t.Fatal(err)
	}
}

// Two instances at once get their own addresses, queues and logs.
func TestTwoInstances(t *testing.T) {
	parallel(t)
	a := StartPostfix(t, Config{})
	b := StartPostfix(t, Config{})
	if a.SubmitAddr() == b.SubmitAddr() || a.LogPath() == b.LogPath() || a.QueueDir() == b.QueueDir() {
		t.Fatalf("instances share state: %s %s, %s %s", a.SubmitAddr(), a.LogPath(), b.SubmitAddr(), b.LogPath())
	}
	ctx := testCtx(t)
	qa := a.Send(from, "a@tls.test", "instance a")
	qb := b.Send(from, "b@tls.test", "instance b")
	wait(ctx, t, a, qa+": to=<a@tls.test>, relay=tls.test["+a.Addr(ReceiverTLS)+"]:25", "status=sent")
	wait(ctx, t, b, qb+": to=<b@tls.test>, relay=tls.test["+b.Addr(ReceiverTLS)+"]:25", "status=sent")
	if n := count(a.LogLines(), LineContains(qb+":")); n != 0 {
		t.Errorf("instance a logged %d lines of b's message %s", n, qb)
	}
	if n := count(b.LogLines(), LineContains(qa+":")); n != 0 {
		t.Errorf("instance b logged %d lines of a's message %s", n, qa)
	}

	// Stop is idempotent and leaves nothing behind; b keeps running.
	a.Stop()
	a.Stop()
	if pids := instancePIDs(a.ConfigDir()); len(pids) != 0 {
		t.Errorf("processes of a left after Stop: %v", pids)
	}
	if len(instancePIDs(b.ConfigDir())) == 0 {
		t.Error("stopping a stopped b too")
	}
}

func TestMissingToolsAreNamed(t *testing.T) {
	_, err := findTools([]string{t.TempDir()})
	if err == nil {
		t.Fatal("findTools in an empty directory succeeded")
	}
	for _, want := range []string{
		"postfix not installed: run .ci/run or apt-get install postfix",
		"swaks not installed: run .ci/run or apt-get install swaks",
		"unshare not installed",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

// Reconfigure reloads Postfix; deliveries after it use the new policy map.
func TestReconfigure(t *testing.T) {
	parallel(t)
	p := StartPostfix(t, Config{Files: map[string]string{"tls_policy": "plain.test encrypt\n"}})
	ctx := testCtx(t)
	q1 := p.Send(from, "before@plain.test", "before reload")
	wait(ctx, t, p, q1+": to=<before@plain.test>, relay=plain.test[", "status=sent")

	p.Reconfigure(map[string]string{"smtp_tls_policy_maps": "texthash:$config_directory/tls_policy"})
	q2 := p.Send(from, "after@plain.test", "after reload")
	wait(ctx, t, p, q2+": to=<after@plain.test>, relay=plain.test[", "dsn=4.7.4, status=deferred (TLS is required")
	p.PurgeQueue()
	if err := p.WaitQueueEmpty(ctx); err != nil {
		t.Fatal(err)
	}
}
