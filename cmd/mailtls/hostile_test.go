package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/store"
)

// hostileLog holds delivery lines whose fields carry what a text column
// of PostgreSQL refuses (NUL bytes, invalid UTF-8), non-ASCII recipient
// domains and quotes, then a plain line: a follower that could not
// commit them would retry the same batch forever and never reach it.
const hostileLog = "2026-11-28T10:00:00+00:00 gw postfix/smtp[300]: Verified TLS connection established to mx.bücher.example[192.0.2.10]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n" +
	"2026-11-28T10:00:01+00:00 gw postfix/smtp[300]: A1A1A1A1A1: to=<u@bücher.example>, relay=mx.bücher.example[192.0.2.10]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as \x00X)\n" +
	"2026-11-28T10:00:02+00:00 gw postfix/smtp[301]: B2B2B2B2B2: to=<\"o'brien \\\"x\\\"\"@例え.jp>, relay=mx.例え.jp[192.0.2.11]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 ok '; DROP TABLE deliveries; --)\n" +
	"2026-11-28T10:00:03+00:00 gw postfix/smtp[302]: C3C3C3C3C3: to=<u@bad\xffdomain.example>, relay=mx.bad\xff.example[192.0.2.12]:25, delay=1, delays=0/0/0.5/0.5, dsn=4.4.1, status=deferred (host said \xc3\x28 no\x00thing)\n" +
	"2026-11-28T10:00:04+00:00 gw postfix/smtp[303]: D4D4D4D4D4: to=<nul\x00x@nul.example>, relay=mx\x00.nul.example[192.0.2.13]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 ok)\n" +
	"2026-11-28T10:00:05+00:00 gw postfix/smtp[304]: E5E5E5E5E5: to=<v@plain.example>, relay=mx.plain.example[192.0.2.14]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 ok)\n"

// TestHostileTextCommits: follow stores every delivery of a log with
// hostile text, and the line after them, on the engine under test
// (MAILTLS_TEST_CLI_ENGINE): nothing stalls. The report finds the
// non-ASCII domains, and importing the same log adds nothing.
func TestHostileTextCommits(t *testing.T) {
	c := newCLI(t)
	logPath := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(logPath, []byte(hostileLog), 0o644); err != nil {
		t.Fatal(err)
	}
	stop := c.background("follow", "--log", logPath, "--poll", "20ms")
	st, err := store.Open(context.Background(), c.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	read := func() (map[string]delivery.Delivery, error) {
		got := map[string]delivery.Delivery{}
		err := st.Deliveries(context.Background(), store.Filter{}, func(d delivery.Delivery) error { got[d.QueueID] = d; return nil })
		return got, err
	}
	queueIDs := []string{"A1A1A1A1A1", "B2B2B2B2B2", "C3C3C3C3C3", "D4D4D4D4D4", "E5E5E5E5E5"}
	var got map[string]delivery.Delivery
	eventually(t, 20*time.Second, "follow stores every delivery", func() (bool, string) {
		got, err = read()
		return err == nil && len(got) == len(queueIDs), fmt.Sprintf("%d of %d: %v %v", len(got), len(queueIDs), got, err)
	})
	// And what is appended after them.
	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(strings.ReplaceAll(strings.ReplaceAll(hostileLog, "10:00:0", "10:01:0"), "[30", "[40")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	eventually(t, 20*time.Second, "follow stores the appended deliveries", func() (bool, string) {
		n := 0
		err := st.Deliveries(context.Background(), store.Filter{}, func(delivery.Delivery) error { n++; return nil })
		return err == nil && n == 2*len(queueIDs), fmt.Sprintf("%d of %d, %v", n, 2*len(queueIDs), err)
	})
	stop()

	for _, q := range queueIDs {
		if _, ok := got[q]; !ok {
			t.Errorf("delivery %s not stored", q)
		}
	}
	if d := got["A1A1A1A1A1"]; d.Domain != "bücher.example" || d.Reason != "250 2.0.0 Ok: queued as \uFFFDX" {
		t.Errorf("A1A1A1A1A1 = domain %q, reason %q", d.Domain, d.Reason)
	}
	if d := got["B2B2B2B2B2"]; d.Domain != "例え.jp" || d.Recipient != `"o'brien \"x\""@例え.jp` {
		t.Errorf("B2B2B2B2B2 = domain %q, recipient %q", d.Domain, d.Recipient)
	}
	if d := got["C3C3C3C3C3"]; d.Domain != "bad\uFFFDdomain.example" || d.Relay != "mx.bad\uFFFD.example[192.0.2.12]:25" || strings.ContainsRune(d.Reason, 0) {
		t.Errorf("C3C3C3C3C3 = domain %q, relay %q, reason %q", d.Domain, d.Relay, d.Reason)
	}
	for q, d := range got {
		for _, v := range []string{d.Domain, d.Recipient, d.Relay, d.Reason} {
			if strings.ContainsRune(v, 0) || !strings.EqualFold(strings.ToValidUTF8(v, "?"), v) {
				t.Errorf("%s: stored %q", q, v)
			}
		}
	}

	var rep struct {
		Rows []struct {
			Key        string `json:"key"`
			Deliveries int64  `json:"deliveries"`
		} `json:"rows"`
	}
	out := c.ok("report", "--since", "2026-11-28", "--until", "2026-11-29", "--by", "domain", "--format", "json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report --by domain: %v: %q", err, out)
	}
	byDomain := map[string]int64{}
	for _, r := range rep.Rows {
		byDomain[r.Key] += r.Deliveries
	}
	for _, d := range []string{"bücher.example", "例え.jp", "plain.example"} {
		if byDomain[d] != 2 {
			t.Errorf("report --by domain: %s has %d sent deliveries, want 2 (%v)", d, byDomain[d], byDomain)
		}
	}
	if out := c.ok("import", logPath); !strings.Contains(out, "0 deliveries stored (10 already present)") {
		t.Errorf("import of the followed log: %q", out)
	}
}
