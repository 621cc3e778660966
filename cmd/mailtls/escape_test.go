package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/output"
	"github.com/mailtls/mailtls/report"
	"github.com/mailtls/mailtls/store"
)

// Test-only names: the JSON Lines contract and plain numbers, for the
// end-to-end tests that decode and compare the commands' output.
type (
	deliveryJSON = output.DeliveryJSON
	statusJSON   = report.StatusJSON
)

var itoa = output.Itoa

// hostile is log data meant to rewrite the terminal: clear the screen,
// set the window title, return the cursor.
const hostile = "\x1b[2J\x1b]0;pwned\x07\r"

// TestTablesEscapeLogData: every table that prints log data or database
// contents shows control characters as escapes.
func TestTablesEscapeLogData(t *testing.T) {
	c := newCLI(t)
	st, err := store.Open(context.Background(), c.db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	yes, no := true, false
	var ds []delivery.Delivery
	for i, at := range []time.Time{now.Add(-3 * time.Hour), now.Add(-2 * time.Hour), now.Add(-time.Hour)} {
		d := delivery.Delivery{Time: at, QueueID: "Q" + hostile + fmt.Sprint(i), Recipient: "a@evil.example", Domain: "evil.example",
			Relay: "mx" + hostile + "[192.0.2.1]:25", Status: "sent", DSN: "2.0.0", TLS: &yes, TLSTrust: "verified",
			TLSProtocol: "TLSv1.3" + hostile, TLSCipher: "AES" + hostile, Key: fmt.Sprintf("%064x", i+1)}
		if i == 2 {
			d.TLS, d.TLSTrust, d.TLSProtocol, d.TLSCipher = &no, "", "", "" // a downgrade
		}
		ds = append(ds, d)
	}
	if _, err := st.AddDeliveries(context.Background(), ds); err != nil {
		t.Fatal(err)
	}
	if err := st.SetOverride(context.Background(), store.Override{Key: "evil.example", Policy: "encrypt", Note: "note"}, "actor"+hostile); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CommitBatch(context.Background(), "file:/var/log/"+hostile, nil, []byte{}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	for _, args := range [][]string{
		{"report", "--since", "1d", "--by", "relay"},
		{"report", "--since", "1d", "--by", "protocol"},
		{"report", "--since", "1d", "--by", "cipher", "--format", "csv"},
		{"report", "--since", "1d"},
		{"report", "downgrades", "--since", "1d"},
		{"report", "overrides", "--since", "1d"},
		{"deliveries", "--format", "csv"},
		{"policy", "list"},
		{"policy", "history"},
		{"status"},
	} {
		out, _, _ := c.run("", args...)
		if strings.ContainsAny(out, "\x1b\r\x07") {
			t.Errorf("mailtls %s prints control characters from the data: %q", strings.Join(args, " "), out)
		}
	}
}
