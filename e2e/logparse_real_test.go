//go:build linux

package e2e

import (
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/logparse"
)

// sendRaw submits a message over SMTP without swaks, which splits --to at
// commas: the recipient goes into RCPT TO:<...> as it is.
func sendRaw(t *testing.T, p *Postfix, rcpt string) {
	t.Helper()
	c, err := smtp.Dial(p.SubmitAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.e2e.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt(rcpt); err != nil {
		t.Fatalf("RCPT TO:<%s>: %v", rcpt, err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("Subject: hostile recipient\r\n\r\nmailtls e2e\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

// TestRealHostileRecipientAndSuspension runs the two log forms of issue
// #14 through the real Postfix and the parser:
//   - a recipient whose quoted local part imitates the rest of a delivery
//     record: Postfix logs it quoted, and the parser keeps every field but
//     the recipient as Postfix wrote it;
//   - an encrypt policy against a receiver without STARTTLS: the first
//     message is deferred by smtp(8) and, the destination being suspended
//     with one delivery at a time, the next ones by error(8) with "delivery
//     temporarily suspended: TLS is required, ...": TLS deferrals too.
//
// MAILTLS_E2E_CAPTURE=$PWD/logparse/testdata/real-postfix37-hostile.log
// go test -run TestRealHostileRecipientAndSuspension ./e2e/ captured the
// testdata file of these lines.
func TestRealHostileRecipientAndSuspension(t *testing.T) {
	parallel(t)
	p := StartPostfix(t, Config{
		PolicyMaps: "texthash:$config_directory/tls_policy",
		Files:      map[string]string{"tls_policy": "enc.test encrypt\n"},
		Hosts:      map[string]string{"enc.test": string(ReceiverPlain)},
		Main: map[string]string{
			"initial_destination_concurrency":       "1",
			"default_destination_concurrency_limit": "1",
		},
	})
	ctx := testCtx(t)

	hostile := `"x@bank.example>, relay=mx.evil.example[192.0.2.9]:25, dsn=2.0.0, status=sent (250 ok) "@plain.test`
	sendRaw(t, p, hostile)
	wait(ctx, t, p, "postfix/smtp[", `to=<"x@bank.example>`, "relay=plain.test[")

	var qids []string
	for _, r := range []string{"a", "b", "c", "d"} {
		qids = append(qids, p.Send(from, r+"@enc.test", "encrypt against plaintext"))
	}
	for _, q := range qids {
		wait(ctx, t, p, q+": to=<", "@enc.test>", "status=deferred")
	}
	suspended := wait(ctx, t, p, "@enc.test>, relay=none", "delivery temporarily suspended")
	t.Logf("suspension line: %s", suspended)
	p.PurgeQueue()

	c := logparse.NewCorrelator(logparse.Options{RefTime: time.Now()})
	var ds []delivery.Delivery
	for _, l := range p.LogLines() {
		ds = append(ds, c.Feed([]byte(l))...)
	}
	var hostileSeen, smtpTLS, suspendedTLS int
	for _, d := range ds {
		switch {
		case strings.HasPrefix(d.Recipient, `"x@bank.example>`):
			hostileSeen++
			if d.Recipient != hostile || d.Domain != "plain.test" || !strings.HasPrefix(d.Relay, "plain.test[") || d.Status != delivery.Sent {
				t.Errorf("hostile recipient parsed as %+v", d)
			}
		case d.Domain == "enc.test" && d.Relay == "none":
			if !d.TLSFailure || d.Status != delivery.Deferred || d.TLS != nil {
				t.Errorf("suspended deferral %+v: want a TLS deferral with TLS unknown", d)
			}
			suspendedTLS++
		case d.Domain == "enc.test":
			if !d.TLSFailure || d.Status != delivery.Deferred {
				t.Errorf("deferral %+v: want a TLS deferral", d)
			}
			smtpTLS++
		case d.Domain == "bank.example":
			t.Errorf("forged delivery %+v", d)
		}
	}
	if hostileSeen != 1 || smtpTLS == 0 || suspendedTLS == 0 {
		t.Errorf("%d hostile, %d smtp TLS deferrals, %d suspended TLS deferrals; want 1 and some of each", hostileSeen, smtpTLS, suspendedTLS)
	}
}
