package logparse

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

func generate(t testing.TB, cfg GenConfig) ([]byte, Truth) {
	t.Helper()
	var buf bytes.Buffer
	truth, err := GenerateLog(&buf, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), truth
}

func splitLines(b []byte) [][]byte {
	lines := bytes.Split(b, []byte("\n"))
	if n := len(lines); n > 0 && len(lines[n-1]) == 0 {
		lines = lines[:n-1]
	}
	return lines
}

func tlsString(b *bool) string {
	if b == nil {
		return "null"
	}
	return fmt.Sprint(*b)
}

// TestGeneratedLogMatchesTruth parses generated logs and compares every
// delivery with the generator's own record.
func TestGeneratedLogMatchesTruth(t *testing.T) {
	for _, seed := range []uint64{1, 2, 42} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			cfg := GenConfig{Seed: seed, Lines: 8000, Domains: 60, Duration: 6 * time.Hour}
			log, truth := generate(t, cfg)
			lines := splitLines(log)
			if len(lines) != truth.Lines {
				t.Fatalf("%d lines written, truth says %d", len(lines), truth.Lines)
			}
			c := NewCorrelator(Options{RefTime: time.Now(), Location: time.UTC})
			got := feedAll(c, lines)
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
				gs := fmt.Sprintf("%v %s %s %s %s %s tls=%s %s %s %s fb=%v fail=%v", g.Time, g.QueueID, g.Recipient, g.Domain, g.Relay, g.Status,
					tlsString(g.TLS), g.TLSTrust, g.TLSProtocol, g.TLSCipher, g.Fallback, g.TLSFailure)
				ws := fmt.Sprintf("%v %s %s %s %s %s tls=%s %s %s %s fb=%v fail=%v", w.Time, w.QueueID, w.Recipient, w.Domain, w.Relay, w.Status,
					tlsString(w.TLS), w.TLSTrust, w.TLSProtocol, w.TLSCipher, w.Fallback, w.TLSFailure)
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
	log, truth := generate(t, GenConfig{Seed: 7, Lines: 15000})
	var client int
	for _, l := range splitLines(log) {
		if bytes.Contains(l, []byte("/smtp[")) {
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

func TestGenerateLogDeterministic(t *testing.T) {
	cfg := GenConfig{Seed: 99, Lines: 3000}
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

func TestGenerateLogWriteError(t *testing.T) {
	if _, err := GenerateLog(&failWriter{n: 100 << 10}, GenConfig{Seed: 1, Lines: 5000}); err == nil {
		t.Error("no error from a failing writer")
	}
}

// TestGeneratedStateSplit runs the restart property on a generated log,
// at a sample of split points.
func TestGeneratedStateSplit(t *testing.T) {
	log, _ := generate(t, GenConfig{Seed: 5, Lines: 800, Domains: 20})
	checkSplits(t, Options{RefTime: time.Now(), Location: time.UTC}, splitLines(log), 13)
}
