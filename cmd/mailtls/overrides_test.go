package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/store"
)

// TestReportOverridesInForce is the case: a domain forced to
// encrypt after 79 plaintext deliveries must not show them, and a
// plaintext delivery while forced is a warning in report overrides, report
// and status (exit 1).
func TestReportOverridesInForce(t *testing.T) {
	c := newCLI(t)
	add := func(from int, ats []time.Time, tls bool) {
		t.Helper()
		st, err := store.Open(context.Background(), c.db)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var ds []delivery.Delivery
		for i, at := range ats {
			on := tls
			ds = append(ds, delivery.Delivery{Time: at, QueueID: fmt.Sprintf("Q%d", from+i), Recipient: "u@forced.example", Domain: "forced.example",
				Relay: "mx.forced.example[192.0.2.1]:25", Status: "sent", DSN: "2.0.0", TLS: &on, Key: fmt.Sprintf("%064x", from+i)})
		}
		if _, err := st.AddDeliveries(context.Background(), ds); err != nil {
			t.Fatal(err)
		}
	}
	var before []time.Time
	for i := range 79 {
		before = append(before, time.Now().Add(-3*time.Hour+time.Duration(i)*time.Minute))
	}
	add(1, before, false)
	c.ok("policy", "set", "forced.example", "encrypt")
	after := time.Now()
	add(100, []time.Time{after, after.Add(time.Millisecond)}, true)
	add(200, []time.Time{after.Add(2 * time.Millisecond)}, false) // Postfix did not ask

	var got struct {
		Rows     []map[string]any `json:"rows"`
		Warnings []map[string]any `json:"warnings"`
	}
	out, errs, code := c.run("", "report", "overrides", "--format", "json")
	if code != 0 {
		t.Fatalf("report overrides: exit %d, %s", code, errs)
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Rows) != 1 {
		t.Fatalf("rows: %s", out)
	}
	r := got.Rows[0]
	for k, v := range map[string]any{"key": "forced.example", "policy": "encrypt", "sent": 3.0, "encrypted": 2.0, "plaintext": 1.0, "deferred": 0.0, "tls_deferred": 0.0, "bounced": 0.0} {
		if r[k] != v {
			t.Errorf("row %s = %v, want %v (%s)", k, r[k], v, out)
		}
	}
	if s, _ := r["in_force_since"].(string); s == "" || len(r) != 9 {
		t.Errorf("row %v: want in_force_since and the 9 fields of the contract", r)
	}
	if len(got.Warnings) != 1 || got.Warnings[0]["key"] != "forced.example" || got.Warnings[0]["plaintext"] != 1.0 || got.Warnings[0]["first_queue_id"] != "Q200" {
		t.Errorf("warnings: %v; want forced.example, 1 plaintext, first Q200", got.Warnings)
	}

	out, errs, _ = c.run("", "report", "overrides")
	if !strings.Contains(out, "PLAINTEXT") || !strings.Contains(errs, "warning: forced.example: 1 delivery sent in plaintext") || !strings.Contains(errs, "Q200") {
		t.Errorf("report overrides table:\n%s\nstderr %s", out, errs)
	}
	if _, errs, code = c.run("", "report"); code != 0 || !strings.Contains(errs, "warning: forced.example") {
		t.Errorf("report: exit %d, stderr %q; want the warning", code, errs)
	}
	out, errs, code = c.run("", "status")
	if code != 1 || !strings.Contains(out, "Warning     forced.example") || !strings.Contains(errs, "Postfix is not asking mailtls") {
		t.Errorf("status: exit %d, stdout %q, stderr %q; want exit 1 and the warning", code, out, errs)
	}
	// After the leak, nothing to warn about. RFC 3339 here has whole
	// seconds: after+2s truncated is always later than the leak at
	// after+2ms (after+1s truncated is not when after is x.998 or later,
	// which failed CI once).
	if _, _, code = c.run("", "status", "--since", after.Add(2*time.Second).Format(time.RFC3339)); code != 0 {
		t.Errorf("status --since after the leak: exit %d, want 0", code)
	}
}
