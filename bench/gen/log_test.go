package gen

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/logparse"
)

func generate(t testing.TB, cfg LogConfig) ([]byte, Truth) {
	t.Helper()
	var buf bytes.Buffer
	truth, err := Log(&buf, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), truth
}

// splitLines splits a log into its lines, without the newlines.
func splitLines(b []byte) []string {
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// TestGeneratedLogMatchesTruth parses generated logs and compares every
// delivery with the generator's own record.
func TestGeneratedLogMatchesTruth(t *testing.T) {
	for _, seed := range []uint64{1, 2, 42} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			cfg := LogConfig{Seed: seed, Lines: 8000, Domains: 60, Duration: 6 * time.Hour}
			log, truth := generate(t, cfg)
			lines := splitLines(log)
			if len(lines) != truth.Lines {
				t.Fatalf("%d lines written, truth says %d", len(lines), truth.Lines)
			}
			c := logparse.NewCorrelator(logparse.Options{RefTime: time.Now(), Location: time.UTC})
			var got []delivery.Delivery
			for _, l := range lines {
				got = append(got, c.Feed([]byte(l))...)
			}
			if len(got) != len(truth.Deliveries) {
				t.Fatalf("%d deliveries parsed, %d written", len(got), len(truth.Deliveries))
			}
			for i, d := range got {
				w := truth.Deliveries[i]
				g := TruthDelivery{
					Time: d.Time, QueueID: d.QueueID, Recipient: d.Recipient, Domain: d.Domain, Relay: d.Relay,
					Status: d.Status, TLS: d.TLS, TLSTrust: d.TLSTrust, TLSProtocol: d.TLSProtocol, TLSCipher: d.TLSCipher,
					Fallback: d.Fallback, TLSFailure: d.TLSFailure,
				}
				fmtTLS := func(b *bool) any {
					if b == nil {
						return "null"
					}
					return *b
				}
				gs := fmt.Sprintf("%v %s %s %s %s %s tls=%s %s %s %s fb=%v fail=%v", g.Time, g.QueueID, g.Recipient, g.Domain, g.Relay, g.Status,
					fmtTLS(g.TLS), g.TLSTrust, g.TLSProtocol, g.TLSCipher, g.Fallback, g.TLSFailure)
				ws := fmt.Sprintf("%v %s %s %s %s %s tls=%s %s %s %s fb=%v fail=%v", w.Time, w.QueueID, w.Recipient, w.Domain, w.Relay, w.Status,
					fmtTLS(w.TLS), w.TLSTrust, w.TLSProtocol, w.TLSCipher, w.Fallback, w.TLSFailure)
				if gs != ws {
					t.Fatalf("delivery %d:\n got %s\nwant %s", i, gs, ws)
				}
			}
		})
	}
}

// TestGeneratedLogShape checks that the generator covers the cases it
// promises, in roughly the promised mix.
func TestGeneratedLogShape(t *testing.T) {
	log, truth := generate(t, LogConfig{Seed: 7, Lines: 15000})
	var client int
	for _, l := range splitLines(log) {
		if strings.Contains(l, "/smtp[") {
			client++
		}
	}
	if r := float64(client) / float64(truth.Lines); r < 0.15 || r > 0.35 {
		t.Errorf("smtp client lines are %.2f of all lines, want about a quarter", r)
	}
	count := map[string]int{}
	for _, d := range truth.Deliveries {
		switch {
		case d.Fallback:
			count["fallback"]++
		case d.TLSFailure:
			count["tlsfail"]++
		case d.TLS == nil:
			count["unknown"]++
		case *d.TLS:
			count["tls:"+string(d.TLSTrust)]++
			count["proto:"+d.TLSProtocol]++
		default:
			count["plain"]++
		}
		count[string(d.Status)]++
	}
	for _, k := range []string{"fallback", "tlsfail", "unknown", "plain", "tls:verified", "tls:trusted", "tls:untrusted",
		"proto:TLSv1.3", "proto:TLSv1.2", string(delivery.Sent), string(delivery.Deferred), string(delivery.Bounced)} {
		if count[k] == 0 {
			t.Errorf("no %s deliveries in %v", k, count)
		}
	}
	for _, want := range []string{"TLS connection reused to", "postfix/tlsproxy[", "postfix-out/smtp[", "postfix/relay/smtp[", "conn_use=",
		"Cannot start TLS: handshake failure", "TLS is required", "relay=none", "[2001:db8:", "from unknown["} {
		if !bytes.Contains(log, []byte(want)) {
			t.Errorf("generated log lacks %q", want)
		}
	}
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	if first := truth.Deliveries[0].Time; first.Before(start) || first.After(start.Add(24*time.Hour)) {
		t.Errorf("first delivery at %v, outside the default day", first)
	}
}

func TestLogDeterministic(t *testing.T) {
	cfg := LogConfig{Seed: 99, Lines: 3000}
	a, ta := generate(t, cfg)
	b, tb := generate(t, cfg)
	if !bytes.Equal(a, b) || len(ta.Deliveries) != len(tb.Deliveries) {
		t.Error("same seed, different logs")
	}
	cfg.Seed = 100
	if c, _ := generate(t, cfg); bytes.Equal(a, c) {
		t.Error("different seeds, same log")
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n -= len(p); w.n < 0 {
		return 0, fmt.Errorf("disk full")
	}
	return len(p), nil
}

func TestLogWriteError(t *testing.T) {
	if _, err := Log(&failWriter{n: 100 << 10}, LogConfig{Seed: 1, Lines: 5000}); err == nil {
		t.Error("no error from a failing writer")
	}
}
