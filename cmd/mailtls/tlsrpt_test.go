package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/internal/testnet"
	"github.com/mailtls/mailtls/store"
	"github.com/mailtls/mailtls/tlsrpt"
)

// tlsrptFixture: yesterday's deliveries to four destinations, a DNS server
// with their _smtp._tls records, a fake sendmail that keeps what it is
// given, and an HTTPS receiver.
type tlsrptFixture struct {
	*cliT
	dns, mailDir string
	srv          *httptest.Server

	mu       sync.Mutex
	posts    [][]byte
	failNext int // answer 503 to this many posts
}

func newTLSRPTFixture(t *testing.T) *tlsrptFixture {
	f := &tlsrptFixture{cliT: newCLI(t), mailDir: t.TempDir()}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		defer f.mu.Unlock()
		if r.Header.Get("Content-Type") != "application/tlsrpt+gzip" {
			http.Error(w, "bad type", http.StatusUnsupportedMediaType)
			return
		}
		if f.failNext > 0 {
			f.failNext--
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		f.posts = append(f.posts, body)
	}))
	t.Cleanup(f.srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	tlsrptRoots = pool
	t.Cleanup(func() { tlsrptRoots = nil })

	z := testnet.NewZone()
	z.Add(t,
		`_smtp._tls.fail.test. 60 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@rcv.test,`+f.srv.URL+`/v1"`,
		`_smtp._tls.plain.test. 60 IN TXT "v=TLSRPTv1;" " rua=mailto:reports@rcv.test"`,
		`_smtp._tls.ok.test. 60 IN TXT "v=TLSRPTv1; rua=`+f.srv.URL+`/ok"`,
		`_smtp._tls.bad.test. 60 IN TXT "v=TLSRPTv1; rua=http://insecure.test/"`,
	)
	f.dns = testnet.StartDNS(t, z)

	script := fmt.Sprintf("#!/bin/sh\nf=$(mktemp %s/msg.XXXXXX)\nprintf '%%s\\n' \"$@\" > \"$f.args\"\ncat > \"$f\"\n", f.mailDir)
	if err := os.WriteFile(filepath.Join(f.mailDir, "sendmail"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	st, err := store.Open(context.Background(), f.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	start, _ := tlsrpt.Day(time.Now())
	at := start.AddDate(0, 0, -1).Add(10 * time.Hour)
	yes, no := true, false
	d := func(sec int, pid int, qid, rcpt, relay string, status delivery.Status, reason string, tls *bool, failure bool) delivery.Delivery {
		return delivery.Delivery{Time: at.Add(time.Duration(sec) * time.Millisecond), LogHost: "sender", Process: "postfix/smtp", PID: pid,
			QueueID: qid, Recipient: rcpt, Domain: rcpt[strings.IndexByte(rcpt, '@')+1:], Relay: relay, Status: status,
			DSN: "2.0.0", Reason: reason, TLS: tls, TLSFailure: failure, Key: fmt.Sprintf("%064x", sec)}
	}
	ds := []delivery.Delivery{
		// fail.test: one session, two recipients, certificate not verified (real-postfix37.log:89); then
		// another message to the same MX that is delivered over TLS.
		d(0, 10, "Q1", "u1@fail.test", "mx.fail.test[127.0.1.2]:25", "deferred", "Server certificate not verified", &yes, true),
		d(1, 10, "Q1", "u2@fail.test", "mx.fail.test[127.0.1.2]:25", "deferred", "Server certificate not verified", &yes, true),
		d(5000, 11, "Q2", "u3@fail.test", "mx.fail.test[127.0.1.2]:25", "sent", "250 2.0.0 Ok", &yes, false),
		// plain.test: no STARTTLS under a forced policy (tls-failures.log:4).
		d(9000, 12, "Q3", "p@plain.test", "plain.test[127.0.1.3]:25", "deferred", "TLS is required, but was not offered by host plain.test[127.0.1.3]", &no, true),
		// ok.test: two messages over TLS.
		d(12000, 13, "Q4", "o@ok.test", "mx.ok.test[127.0.1.4]:25", "sent", "250 2.0.0 Ok", &yes, false),
		d(15000, 14, "Q5", "o2@ok.test", "mx.ok.test[127.0.1.4]:25", "sent", "250 2.0.0 Ok", &yes, false),
		// none.test publishes no record; bad.test a malformed one.
		d(18000, 15, "Q6", "n@none.test", "mx.none.test[127.0.1.5]:25", "sent", "250 2.0.0 Ok", &yes, false),
		d(19000, 16, "Q7", "b@bad.test", "mx.bad.test[127.0.1.6]:25", "sent", "250 2.0.0 Ok", &yes, false),
	}
	if _, err := st.AddDeliveries(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	// fail.test publishes MTA-STS enforce (the published cache's entry).
	data := `{"v":1,"result":{"source":"mta-sts","policy":"secure match=mx.fail.test servername=hostname","resolved_at":"2026-01-01T00:00:00Z","evidence":{}},` +
		`"policy":{"id":"1","text":"version: STSv1\r\nmode: enforce\r\nmx: mx.fail.test\r\nmax_age: 86400\r\n","fetched":"2026-01-01T00:00:00Z","expires":"2099-01-01T00:00:00Z"}}`
	if err := st.SavePublished(context.Background(), "fail.test", "mta-sts", "secure match=mx.fail.test servername=hostname", []byte(data), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *tlsrptFixture) send(args ...string) (string, string, int) {
	return f.run("", append([]string{"tlsrpt", "send", "--resolver", f.dns, "--sendmail", filepath.Join(f.mailDir, "sendmail"),
		"--tlsrpt-org", "Sender Org", "--tlsrpt-contact", "mailto:tlsrpt@sender.test"}, args...)...)
}

// show returns the reports of tlsrpt show --format json, by domain.
func (f *tlsrptFixture) show() map[string]tlsrpt.Report {
	f.t.Helper()
	out := f.ok("tlsrpt", "show", "--format", "json", "--tlsrpt-org", "Sender Org", "--tlsrpt-contact", "mailto:tlsrpt@sender.test")
	got := map[string]tlsrpt.Report{}
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var r tlsrpt.Report
		if err := dec.Decode(&r); err != nil {
			f.t.Fatalf("show output: %v\n%s", err, out)
		}
		got[r.Policies[0].Policy.Domain] = r
	}
	return got
}

// mailCount is how many times sendmail ran.
func (f *tlsrptFixture) mailCount() int {
	args, _ := filepath.Glob(filepath.Join(f.mailDir, "msg.*.args"))
	return len(args)
}

// mails returns the messages the fake sendmail got, with their arguments.
func (f *tlsrptFixture) mails() map[string][]byte {
	f.t.Helper()
	out := map[string][]byte{}
	args, _ := filepath.Glob(filepath.Join(f.mailDir, "msg.*.args"))
	for _, a := range args {
		av, err := os.ReadFile(a)
		if err != nil {
			f.t.Fatal(err)
		}
		msg, err := os.ReadFile(strings.TrimSuffix(a, ".args"))
		if err != nil {
			f.t.Fatal(err)
		}
		out[strings.ReplaceAll(strings.TrimSpace(string(av)), "\n", " ")] = msg
	}
	return out
}

// mailedReport decodes the gzip'd report attached to msg.
func mailedReport(t *testing.T, msg []byte) (tlsrpt.Report, string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type %q", m.Header.Get("Content-Type"))
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
		return gunzipReport(t, base64.NewDecoder(base64.StdEncoding, p)), m.Header.Get("Subject")
	}
}

func gunzipReport(t *testing.T, r io.Reader) tlsrpt.Report {
	t.Helper()
	zr, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	var rep tlsrpt.Report
	if err := json.NewDecoder(zr).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestTLSRPTSend: show gives the recorded sessions; send mails the
// mailto: reports (through a fake sendmail) and posts the https: ones,
// each equal to show's; a second send sends nothing; a failed post is
// retried by the next run, once.
func TestTLSRPTSend(t *testing.T) {
	f := newTLSRPTFixture(t)
	shown := f.show()
	var domains []string
	for d := range shown {
		domains = append(domains, d)
	}
	sort.Strings(domains)
	if strings.Join(domains, " ") != "bad.test fail.test none.test ok.test plain.test" {
		t.Fatalf("show has reports for %q", domains)
	}
	want := map[string]struct {
		typ      tlsrpt.PolicyType
		ok, fail int64
		result   tlsrpt.ResultType
	}{
		"fail.test":  {tlsrpt.PolicySTS, 1, 1, tlsrpt.ValidationFailure},
		"plain.test": {tlsrpt.PolicyNoPolicyFound, 0, 1, tlsrpt.StartTLSNotSupported},
		"ok.test":    {tlsrpt.PolicyNoPolicyFound, 2, 0, ""},
	}
	for d, w := range want {
		p := shown[d].Policies[0]
		if p.Policy.Type != w.typ || p.Summary != (tlsrpt.Summary{Successful: w.ok, Failed: w.fail}) {
			t.Errorf("%s: policy %+v summary %+v, want %s %d/%d", d, p.Policy, p.Summary, w.typ, w.ok, w.fail)
		}
		if w.result != "" && (len(p.FailureDetails) != 1 || p.FailureDetails[0].ResultType != w.result || p.FailureDetails[0].FailedSessionCount != 1) {
			t.Errorf("%s: failure details %+v, want one %s", d, p.FailureDetails, w.result)
		}
	}
	if s := shown["fail.test"].Policies[0].Policy; !reflect.DeepEqual(s.MXHost, []string{"mx.fail.test"}) || len(s.String) != 4 {
		t.Errorf("fail.test policy %+v", s)
	}
	table := f.ok("tlsrpt", "show", "--domain", "plain.test")
	if !strings.Contains(table, "starttls-not-supported") || strings.Contains(table, "ok.test") {
		t.Errorf("show --domain plain.test:\n%s", table)
	}

	// Dry run: nothing is sent or recorded.
	out, errs, code := f.send("--dry-run")
	if code != 0 || resultCount(out, "dry-run") != 4 || f.mailCount() != 0 || len(f.posts) != 0 {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, errs)
	}

	f.failNext = 1 // the first post fails
	out, errs, code = f.send()
	if code != 1 || resultCount(out, "sent") != 3 || resultCount(out, "failed") != 1 || resultCount(out, "skipped") != 1 ||
		!strings.Contains(errs, "1 report(s) not sent") || !strings.Contains(errs, "domain=bad.test") {
		t.Errorf("first send: exit %d\n%s\n%s", code, out, errs)
	}
	mails := f.mails()
	if len(mails) != 2 || f.mailCount() != 2 {
		t.Fatalf("mails sent: %d, want 2 (fail.test and plain.test)", len(mails))
	}
	for args, to := range map[string]string{"fail.test": "tlsrpt@rcv.test", "plain.test": "reports@rcv.test"} {
		msg := mails["-i -f tlsrpt@sender.test -- "+to]
		if msg == nil {
			t.Errorf("no mail to %s: %q", to, mails)
			continue
		}
		rep, subject := mailedReport(t, msg)
		if !reflect.DeepEqual(rep, shown[args]) {
			t.Errorf("mailed report of %s differs from show:\n%+v\n%+v", args, rep, shown[args])
		}
		if subject != "Report Domain: "+args+" Submitter: sender.test Report-ID: <"+rep.ReportID+">" {
			t.Errorf("Subject %q", subject)
		}
		if strings.Contains(string(msg), "@"+args) {
			t.Errorf("the message of %s holds a recipient address", args)
		}
	}
	if len(f.posts) != 1 {
		t.Fatalf("posts: %d, want 1 (one of two failed)", len(f.posts))
	}

	// The next run retries the failed post only.
	out, errs, code = f.send()
	if code != 0 || resultCount(out, "sent") != 1 || resultCount(out, "done") != 3 || f.mailCount() != 2 || len(f.posts) != 2 {
		t.Errorf("second send: exit %d, %d mails, %d posts\n%s\n%s", code, f.mailCount(), len(f.posts), out, errs)
	}
	got := map[string]bool{}
	for _, p := range f.posts {
		rep := gunzipReport(t, bytes.NewReader(p))
		d := rep.Policies[0].Policy.Domain
		got[d] = true
		if !reflect.DeepEqual(rep, shown[d]) {
			t.Errorf("posted report of %s differs from show:\n%+v\n%+v", d, rep, shown[d])
		}
	}
	if !got["fail.test"] || !got["ok.test"] {
		t.Errorf("posted reports: %v", got)
	}

	// A third run sends nothing.
	out, _, code = f.send()
	if code != 0 || resultCount(out, "sent") != 0 || resultCount(out, "done") != 4 || f.mailCount() != 2 || len(f.posts) != 2 {
		t.Errorf("third send: exit %d, %d mails, %d posts\n%s", code, f.mailCount(), len(f.posts), out)
	}
}

func TestTLSRPTUsage(t *testing.T) {
	c := newCLI(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tlsrpt", "send"}, "TLS reports need tlsrpt-org and tlsrpt-contact"},
		{[]string{"run", "--tlsrpt", "--config", "/dev/null", "--log", "/nonexistent", "--socketmap", "", "--tcp", ""}, "TLS reports need tlsrpt-org and tlsrpt-contact"},
		{[]string{"tlsrpt", "send", "--tlsrpt-org", "O", "--tlsrpt-contact", "a@b.test", "--tlsrpt-timeout", "0s"}, "--tlsrpt-timeout"},
		{[]string{"tlsrpt", "send", "--tlsrpt-org", "O", "--tlsrpt-contact", "https://x.test/"}, "not a mail address"},
		{[]string{"tlsrpt", "show", "--date", "30.11.2026"}, "want a UTC day as YYYY-MM-DD"},
		{[]string{"tlsrpt", "show", "--format", "csv"}, "invalid --format"},
		{[]string{"tlsrpt", "show", "--domain", "a b"}, "--domain"},
	} {
		_, errs, code := c.run("", tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
}

// resultCount counts the rows of send's table whose RESULT is result.
func resultCount(out, result string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		for _, f := range strings.Fields(l) {
			if f == result {
				n++
				break
			}
		}
	}
	return n
}

// TestTLSRPTConfig: the tlsrpt settings come from the config file the
// daemon reads too, and the daemon accepts (and ignores) them.
func TestTLSRPTConfig(t *testing.T) {
	f := newTLSRPTFixture(t)
	conf := filepath.Join(t.TempDir(), "mailtls.conf")
	if err := os.WriteFile(conf, []byte("tlsrpt-org = Conf Org\ntlsrpt-contact = mailto:c@sender.test\nsocketmap = 0.0.0.0:8470\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := f.ok("tlsrpt", "show", "--format", "json", "--domain", "ok.test", "--config", conf)
	var r tlsrpt.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.OrganizationName != "Conf Org" || r.ContactInfo != "mailto:c@sender.test" {
		t.Errorf("show with config: %+v %v\n%s", r, err, out)
	}
	if out := f.ok("tlsrpt", "show", "--format", "json", "--domain", "ok.test", "--config", conf, "--tlsrpt-org", "Flag Org"); !strings.Contains(out, `"Flag Org"`) {
		t.Errorf("the flag does not win over the config file:\n%s", out)
	}
	_, errs, code := f.run("", "serve", "--config", conf, "--tcp", "")
	if code != exitUsage || !strings.Contains(errs, "not a loopback address") {
		t.Errorf("serve with tlsrpt settings in the config: exit %d %q (want the socketmap error, not an unknown setting)", code, errs)
	}
}

// TestTLSRPTPolicyInForce: a destination whose MTA-STS policy changed.
// Policy 1 (mx1) was in force from three days ago, policy 2 (mx2, the one
// cached now) from yesterday noon. The report of the day before yesterday
// names policy 1, as the answer log keeps it (its mx pattern, no policy
// lines: the cache holds only policy 2's); yesterday's has two policies,
// each with the sessions of its hours, policy 2 with its lines.
func TestTLSRPTPolicyInForce(t *testing.T) {
	c := newCLI(t)
	ctx := context.Background()
	st, err := store.Open(ctx, c.db)
	if err != nil {
		t.Fatal(err)
	}
	today, _ := tlsrpt.Day(time.Now())
	yesterday, before := today.AddDate(0, 0, -1), today.AddDate(0, 0, -2)
	entry := func(id, mx string) (string, []byte) {
		answer := "secure match=" + mx + " servername=hostname"
		return answer, []byte(`{"v":1,"result":{"source":"mta-sts","policy":"` + answer + `","resolved_at":"2026-01-01T00:00:00Z","evidence":{}},` +
			`"policy":{"id":"` + id + `","text":"version: STSv1\r\nmode: enforce\r\nmx: ` + mx + `\r\nmax_age: 86400\r\n","fetched":"2026-01-01T00:00:00Z","expires":"2099-01-01T00:00:00Z"}}`)
	}
	a1, d1 := entry("1", "mx1.chg.test")
	a2, d2 := entry("2", "mx2.chg.test")
	if err := st.SavePublishedAnswer(ctx, "chg.test", "mta-sts", a1, "1", d1, today.AddDate(0, 0, -3), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.SavePublishedAnswer(ctx, "chg.test", "mta-sts", a2, "2", d2, yesterday.Add(12*time.Hour), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	yes := true
	n := 0
	d := func(at time.Time, mx string, status delivery.Status, reason string) delivery.Delivery {
		n++
		return delivery.Delivery{Time: at, Host: "sender", Process: "postfix/smtp", PID: 100 + n, QueueID: fmt.Sprintf("Q%05d", n),
			Recipient: "u@chg.test", Domain: "chg.test", Relay: mx + "[127.0.1.9]:25", Status: status, DSN: "2.0.0", Reason: reason,
			TLS: &yes, TLSFailure: status != "sent", Key: fmt.Sprintf("%064x", n)}
	}
	ds := []delivery.Delivery{
		d(before.Add(9*time.Hour), "mx1.chg.test", "sent", "250 ok"),
		d(yesterday.Add(8*time.Hour), "mx1.chg.test", "sent", "250 ok"),
		d(yesterday.Add(9*time.Hour), "mx1.chg.test", "sent", "250 ok"),
		d(yesterday.Add(13*time.Hour), "mx1.chg.test", "deferred", "Server certificate not verified"),
		d(yesterday.Add(14*time.Hour), "mx2.chg.test", "sent", "250 ok"),
	}
	if _, err := st.AddDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}
	st.Close()

	show := func(day time.Time) tlsrpt.Report {
		t.Helper()
		out := c.ok("tlsrpt", "show", "--format", "json", "--date", day.Format("2006-01-02"), "--tlsrpt-org", "O", "--tlsrpt-contact", "mailto:t@sender.test")
		var r tlsrpt.Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("show: %v\n%s", err, out)
		}
		return r
	}
	p1 := tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: "chg.test", MXHost: []string{"mx1.chg.test"}}
	p2 := tlsrpt.Policy{Type: tlsrpt.PolicySTS, Domain: "chg.test", MXHost: []string{"mx2.chg.test"},
		String: []string{"version: STSv1", "mode: enforce", "mx: mx2.chg.test", "max_age: 86400"}}
	r := show(before)
	if len(r.Policies) != 1 || !reflect.DeepEqual(r.Policies[0].Policy, p1) || r.Policies[0].Summary != (tlsrpt.Summary{Successful: 1}) {
		t.Errorf("the day before yesterday: %+v, want policy 1 with one session", r.Policies)
	}
	r = show(yesterday)
	if len(r.Policies) != 2 || !reflect.DeepEqual(r.Policies[0].Policy, p1) || r.Policies[0].Summary != (tlsrpt.Summary{Successful: 2}) ||
		!reflect.DeepEqual(r.Policies[1].Policy, p2) || r.Policies[1].Summary != (tlsrpt.Summary{Successful: 1, Failed: 1}) {
		t.Errorf("yesterday: %+v, want policy 1 with 2 sessions, then policy 2 with 1 + 1 failed", r.Policies)
	}
}
