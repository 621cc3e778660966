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

// amavisLog is a host with a content filter: each message goes to amavis
// on 127.0.0.1:10024, comes back on 10025 under a new queue id, and then
// goes out; local mail ends in dovecot over LMTP on a unix socket; one
// more filter (scanner.corp) is internal only when configured.
const amavisLog = `2026-11-28T10:00:01+00:00 gw postfix/smtp[200]: AAA111: to=<u@gmail.com>, relay=127.0.0.1[127.0.0.1]:10024, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as BBB222)
2026-11-28T10:00:02+00:00 gw postfix/smtp[201]: Trusted TLS connection established to gmail-smtp-in.l.google.com[142.250.1.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
2026-11-28T10:00:02+00:00 gw postfix/smtp[201]: BBB222: to=<u@gmail.com>, relay=gmail-smtp-in.l.google.com[142.250.1.1]:25, delay=0.5, delays=0/0/0.2/0.3, dsn=2.0.0, status=sent (250 2.0.0 OK)
2026-11-28T10:00:03+00:00 gw postfix/lmtp[202]: CCC333: to=<w@local.example>, relay=mail.local.example[private/dovecot-lmtp], delay=0.05, delays=0.01/0/0.01/0.03, dsn=2.0.0, status=sent (250 2.0.0 <w@local.example> Saved)
2026-11-28T10:00:04+00:00 gw postfix-mx/content-filter/smtp[203]: DDD444: to=<x@corp.example>, relay=scanner.corp[10.9.9.9]:10030, delay=0.1, delays=0/0/0.05/0.05, dsn=2.0.0, status=sent (250 2.0.0 Ok)
`

var amavisWindow = []string{"--since", "2026-11-28", "--until", "2026-11-29"}

func TestReportInternalHops(t *testing.T) {
	dir := t.TempDir()
	logf := filepath.Join(dir, "mail.log")
	if err := os.WriteFile(logf, []byte(amavisLog), 0o644); err != nil {
		t.Fatal(err)
	}
	summary := func(c *cliT, extra ...string) map[string]any {
		t.Helper()
		var got map[string]any
		if err := json.Unmarshal([]byte(c.ok(append(append([]string{"report", "--format", "json"}, amavisWindow...), extra...)...)), &got); err != nil {
			t.Fatal(err)
		}
		return got
	}

	c := newCLI(t)
	c.ok("import", "--quiet", logf)
	got := summary(c)
	// The filter hop and the LMTP delivery are internal; the message's
	// outbound hop after re-injection counts once.
	for k, v := range map[string]float64{"deliveries": 2, "encrypted": 1, "plaintext": 1, "internal": 2, "domains": 2} {
		if got[k] != v {
			t.Errorf("report %s = %v, want %v (%v)", k, got[k], v, got)
		}
	}
	if got := summary(c, "--include-internal"); got["deliveries"] != float64(4) || got["internal"] != float64(2) {
		t.Errorf("report --include-internal: %v; want 4 deliveries, 2 of them internal", got)
	}
	text := c.ok(append([]string{"report"}, amavisWindow...)...)
	if !strings.Contains(text, "Internal hops: 2, not counted above") {
		t.Errorf("report text does not say how many internal hops it left out:\n%s", text)
	}
	by := c.ok(append([]string{"report", "--by", "relay", "--format", "json"}, amavisWindow...)...)
	if strings.Contains(by, "127.0.0.1") || strings.Contains(by, "mail.local.example") || !strings.Contains(by, "gmail-smtp-in") {
		t.Errorf("report --by relay counts internal hops: %s", by)
	}
	internal := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(c.ok("deliveries", "--format", "jsonl")), "\n") {
		var d map[string]any
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatal(err)
		}
		b, ok := d["internal"].(bool)
		if _, has := d["tls_feature"].(string); !ok || !has {
			t.Errorf("deliveries jsonl lacks internal or tls_feature: %s", line)
		}
		internal[d["queue_id"].(string)] = b
	}
	if want := map[string]bool{"AAA111": true, "BBB222": false, "CCC333": true, "DDD444": false}; !mapsEqual(internal, want) {
		t.Errorf("internal per queue id = %v, want %v", internal, want)
	}

	// A configured filter, from the config file import shares with run.
	c2 := newCLI(t)
	conf := filepath.Join(dir, "mailtls.conf")
	if err := os.WriteFile(conf, []byte("socketmap = 127.0.0.1:8470\ninternal-relays = scanner.corp:10030, 10.1.0.0/16\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c2.ok("import", "--quiet", "--config", conf, logf)
	if got := summary(c2); got["deliveries"] != float64(1) || got["internal"] != float64(3) || got["coverage"] != float64(1) {
		t.Errorf("with internal-relays: %v; want 1 outbound delivery, encrypted, and 3 internal hops", got)
	}

	for _, bad := range []string{"scanner.corp:0", "10.0.0.0/33", "bad host!"} {
		_, errs, code := c.run("", "import", "--quiet", "--internal-relays", bad, logf)
		if code != 2 || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "accepted") {
			t.Errorf("--internal-relays %q: exit %d, stderr %q; want 2 and one line naming what is accepted", bad, code, errs)
		}
	}
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestFollowInternalHops: follow classifies with the same rule as import,
// --internal-relays included, and refuses a bad list before following.
func TestFollowInternalHops(t *testing.T) {
	c := newCLI(t)
	logPath := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(logPath, []byte(amavisLog), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := c.run("", "follow", "--log", logPath, "--internal-relays", "[10.9.9.9"); code != exitUsage || strings.Count(strings.TrimSpace(errs), "\n") != 0 {
		t.Fatalf("follow with a bad --internal-relays: exit %d, stderr %q", code, errs)
	}
	stop := c.background("follow", "--log", logPath, "--internal-relays", "10.9.9.9")
	st, err := store.Open(context.Background(), c.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	internal := map[string]bool{}
	eventually(t, 20*time.Second, "follow records the log", func() (bool, string) {
		internal = map[string]bool{}
		err := st.Deliveries(context.Background(), store.Filter{}, func(d delivery.Delivery) error { internal[d.QueueID] = d.Internal; return nil })
		return err == nil && len(internal) == 4, fmt.Sprintf("%v %v", internal, err)
	})
	stop()
	if want := map[string]bool{"AAA111": true, "BBB222": false, "CCC333": true, "DDD444": true}; !mapsEqual(internal, want) {
		t.Errorf("internal per queue id = %v, want %v", internal, want)
	}
}
