package logparse

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/mailtls/mailtls/bench/gen"
	"github.com/mailtls/mailtls/delivery"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the parser's output")

// goldenRecord is the JSONL form of a delivery.Delivery in testdata/*.golden: the
// contract fields of "mailtls deliveries --format jsonl" plus what helps a
// reader check the file by hand.
type goldenRecord struct {
	Time        string `json:"time"`
	Host        string `json:"host"`
	Process     string `json:"process"`
	PID         int    `json:"pid"`
	QueueID     string `json:"queue_id"`
	Recipient   string `json:"recipient"`
	OrigTo      string `json:"orig_to,omitempty"`
	Domain      string `json:"domain"`
	Relay       string `json:"relay"`
	Status      string `json:"status"`
	DSN         string `json:"dsn"`
	Reason      string `json:"reason"`
	TLS         *bool  `json:"tls"`
	TLSTrust    string `json:"tls_trust"`
	TLSProtocol string `json:"tls_protocol"`
	TLSCipher   string `json:"tls_cipher"`
	Fallback    bool   `json:"fallback"`
	TLSFailure  bool   `json:"tls_failure"`
	TLSFeature  string `json:"tls_feature,omitempty"`
	TLSVerify   string `json:"tls_verify,omitempty"`
	TLSRPT      string `json:"tlsrpt,omitempty"`
}

func toGolden(d delivery.Delivery) goldenRecord {
	return goldenRecord{
		Time: d.Time.Format(time.RFC3339Nano), Host: d.LogHost, Process: d.Process, PID: d.PID,
		QueueID: d.QueueID, Recipient: d.Recipient, OrigTo: d.OrigTo, Domain: d.Domain,
		Relay: d.Relay, Status: string(d.Status), DSN: d.DSN, Reason: d.Reason,
		TLS: d.TLS, TLSTrust: string(d.TLSTrust), TLSProtocol: d.TLSProtocol, TLSCipher: d.TLSCipher,
		Fallback: d.Fallback, TLSFailure: d.TLSFailure, TLSFeature: d.TLSFeature,
		TLSVerify: d.TLSVerify, TLSRPT: d.TLSRPT,
	}
}

// goldenOptions returns the options a testdata file is parsed with. The
// default reference time makes "Nov 28" stamps fall in 2026.
func goldenOptions(name string) Options {
	switch name {
	case "real-postfix37-tlsrpt.log", "postfix310-tlsrpt.log": // captured (written) in December 2026
		return Options{RefTime: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC), Location: time.UTC}
	case "rollover.log":
		return Options{RefTime: time.Date(2027, 1, 2, 12, 0, 0, 0, time.UTC), Location: time.FixedZone("CET", 3600)}
	}
	return Options{RefTime: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), Location: time.UTC}
}

// readLogLines splits a file into lines the way a follower does: on "\n",
// without the newline.
func readLogLines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(b, []byte("\n"))
	if n := len(lines); n > 0 && len(lines[n-1]) == 0 {
		lines = lines[:n-1]
	}
	return lines
}

func feedAll(c *Correlator, lines [][]byte) []delivery.Delivery {
	var out []delivery.Delivery
	for _, l := range lines {
		out = append(out, c.Feed(l)...)
	}
	return out
}

func goldenInputs(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.log")
	}
	return files
}

func encodeGolden(t testing.TB, ds []delivery.Delivery) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, d := range ds {
		if err := enc.Encode(toGolden(d)); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// TestGolden parses every testdata/NAME.log (including real-*.log captured
// from a real Postfix, when present) and compares with NAME.golden.
func TestGolden(t *testing.T) {
	for _, path := range goldenInputs(t) {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".log"), func(t *testing.T) {
			c := NewCorrelator(goldenOptions(name))
			got := encodeGolden(t, feedAll(c, readLogLines(t, path)))
			gpath := strings.TrimSuffix(path, ".log") + ".golden"
			if *update {
				if err := os.WriteFile(gpath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(gpath)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
				for i := 0; i < max(len(gl), len(wl)); i++ {
					var g, w string
					if i < len(gl) {
						g = gl[i]
					}
					if i < len(wl) {
						w = wl[i]
					}
					if g != w {
						t.Errorf("record %d:\n got: %s\nwant: %s", i+1, g, w)
					}
				}
			}
		})
	}
}

// TestStateSplit checks the restart property: feeding lines 1..k, saving
// the state, restoring it into a fresh correlator and feeding k+1..n gives
// exactly the deliveries (keys, times and all) and stats of one
// correlator fed 1..n, at every split point.
func TestStateSplit(t *testing.T) {
	for _, path := range goldenInputs(t) {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".log"), func(t *testing.T) {
			opts := goldenOptions(name)
			lines := readLogLines(t, path)
			checkSplits(t, opts, lines, 1)
		})
	}
}

func checkSplits(t *testing.T, opts Options, lines [][]byte, step int) {
	t.Helper()
	whole := NewCorrelator(opts)
	want := feedAll(whole, lines)
	wantStats := whole.Stats()
	for k := 0; k <= len(lines); k += step {
		first := NewCorrelator(opts)
		got := feedAll(first, lines[:k])
		state, err := first.MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		// A restarted process has another reference time; once the year
		// of traditional stamps is known, the state wins.
		opts2 := opts
		if first.year != 0 {
			opts2.RefTime = opts.RefTime.Add(400 * 24 * time.Hour)
		}
		second := NewCorrelator(opts2)
		if err := second.UnmarshalState(state); err != nil {
			t.Fatalf("split %d: %v", k, err)
		}
		again, err := second.MarshalState()
		if err != nil || !bytes.Equal(again, state) {
			t.Fatalf("split %d: state does not round-trip: %v\n%s\n%s", k, err, state, again)
		}
		got = append(got, feedAll(second, lines[k:])...)
		if len(got) != len(want) {
			t.Fatalf("split at line %d: %d deliveries, want %d", k, len(got), len(want))
		}
		for i := range got {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Fatalf("split at line %d: delivery %d differs\n got: %+v\nwant: %+v", k, i, got[i], want[i])
			}
		}
		if s := second.Stats(); s != wantStats {
			t.Fatalf("split at line %d: stats %+v, want %+v", k, s, wantStats)
		}
	}
}

func TestUnmarshalStateErrors(t *testing.T) {
	c := NewCorrelator(Options{})
	for _, in := range []string{"{", `{"v":99}`, `[]`, `{"v":1,"procs":"x"}`} {
		if err := c.UnmarshalState([]byte(in)); !errors.Is(err, ErrBadState) {
			t.Errorf("UnmarshalState(%q) = %v, want ErrBadState", in, err)
		}
	}
	// Empty state resets.
	c.Feed([]byte("Nov 28 16:00:00 host postfix/smtp[700]: Untrusted TLS connection established to mx.g.example[192.0.2.71]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"))
	if err := c.UnmarshalState(nil); err != nil {
		t.Fatal(err)
	}
	if c.Stats() != (Stats{}) || len(c.procs) != 0 || c.tlsSeen {
		t.Errorf("UnmarshalState(nil) did not reset: %+v", c.Stats())
	}
}

func TestGarbageStats(t *testing.T) {
	c := NewCorrelator(goldenOptions("garbage.log"))
	ds := feedAll(c, readLogLines(t, filepath.Join("testdata", "garbage.log")))
	// Skipped: 6 lines without a readable header, the truncated delivery
	// line and the one with an unknown status.
	want := Stats{Lines: 14, Deliveries: 4, Skipped: 8, TLSLines: 1}
	if got := c.Stats(); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
	if len(ds) != 4 {
		t.Fatalf("%d deliveries, want 4", len(ds))
	}
}

func TestHugeLines(t *testing.T) {
	c := NewCorrelator(goldenOptions(""))
	valid := []byte("Nov 28 16:00:00 host postfix/smtp[700]: 8000000001: to=<g1@g.example>, relay=mx.g.example[192.0.2.71]:25, delay=0.1, delays=0/0/0.05/0.05, dsn=2.0.0, status=sent (250 ok)")
	garbage := bytes.Repeat([]byte{0xff, 0x00, 'x', '['}, 10<<20/4)
	withHeader := append([]byte("Nov 28 16:00:00 host postfix/smtp[700]: 8000000001: to=<"), bytes.Repeat([]byte("a"), 10<<20)...)
	for _, l := range [][]byte{garbage, valid, withHeader, valid} {
		c.Feed(l)
	}
	want := Stats{Lines: 4, Deliveries: 2, Skipped: 2}
	if got := c.Stats(); got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
}

func TestKeyIsLineHash(t *testing.T) {
	line := []byte("Nov 28 16:00:00 host postfix/smtp[700]: 8000000001: to=<g1@g.example>, relay=mx.g.example[192.0.2.71]:25, delay=0.1, delays=0/0/0.05/0.05, dsn=2.0.0, status=sent (250 ok)")
	a := NewCorrelator(goldenOptions("")).Feed(line)
	b := NewCorrelator(goldenOptions("")).Feed(bytes.Clone(line))
	if len(a) != 1 || len(b) != 1 {
		t.Fatal("no delivery")
	}
	// printf '%s' LINE | sha256sum
	const want = "b66b76c75a63a0135926ad30f432f324935566e9356d66f17f6234590fe58a5d"
	if a[0].Key != want || b[0].Key != want {
		t.Errorf("keys %q and %q, want %q", a[0].Key, b[0].Key, want)
	}
	other := bytes.Replace(line, []byte("16:00:00"), []byte("16:00:01"), 1)
	if c := NewCorrelator(goldenOptions("")).Feed(other); c[0].Key == a[0].Key {
		t.Error("different lines share a key")
	}
}

// FuzzFeed feeds arbitrary input, split into lines, and checks invariants
// of the output. It also checks the restart property at the midpoint.
func FuzzFeed(f *testing.F) {
	addTestdataSeeds(f)
	for _, path := range goldenInputs(f) {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) < 8<<10 {
			f.Add(b)
		}
	}
	f.Add([]byte("\x00\xff\n\n\r\n{\n{\"__REALTIME_TIMESTAMP\":\"1\",\"MESSAGE\":[1,2,3]}\n"))
	// real-postfix37-dane.log is over the size limit: its unusable-TLSA
	// session (a warning, then the verification failure) as a seed.
	f.Add([]byte(unusableTLSASession))
	f.Fuzz(func(t *testing.T, in []byte) {
		lines := bytes.Split(in, []byte("\n"))
		opts := Options{RefTime: time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC), Location: time.FixedZone("X", -7*3600)}
		c := NewCorrelator(opts)
		all := feedAll(c, lines)
		st := c.Stats()
		if st.Lines != int64(len(lines)) || st.Deliveries != int64(len(all)) || st.Skipped > st.Lines || st.TLSLines > st.Lines {
			t.Fatalf("stats %+v for %d lines, %d deliveries", st, len(lines), len(all))
		}
		for _, d := range all {
			checkDelivery(t, d)
		}
		checkStateCost(t, c)
		// Restart at the midpoint gives the same result.
		half := len(lines) / 2
		a := NewCorrelator(opts)
		got := feedAll(a, lines[:half])
		state, err := a.MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		b := NewCorrelator(opts)
		if err := b.UnmarshalState(state); err != nil {
			t.Fatal(err)
		}
		got = append(got, feedAll(b, lines[half:])...)
		if !reflect.DeepEqual(got, all) {
			t.Fatalf("restart at line %d changed the result", half)
		}
	})
}

// checkStateCost checks the state size accounting: the running costs match
// the entries, and bound the size of MarshalState's output.
func checkStateCost(t *testing.T, c *Correlator) {
	t.Helper()
	pb, fb := 0, 0
	for key, p := range c.procs {
		pb += p.cost()
		if p.counted != p.cost() {
			t.Fatalf("process %s: cost %d, counted as %d", key, p.cost(), p.counted)
		}
	}
	for k := range c.failed {
		fb += k.cost()
	}
	if pb != c.procBytes || fb != c.failBytes || pb > procBudget || fb > failBudget {
		t.Fatalf("state costs %d/%d, counted %d/%d", pb, fb, c.procBytes, c.failBytes)
	}
	state, err := c.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	if len(state) > pb+fb+400 {
		t.Fatalf("state of %d bytes, costs %d+%d", len(state), pb, fb)
	}
}

func checkDelivery(t *testing.T, d delivery.Delivery) {
	t.Helper()
	switch d.Status {
	case delivery.Sent, delivery.Deferred, delivery.Bounced, delivery.Expired:
	default:
		t.Fatalf("status %q", d.Status)
	}
	if d.Time.Location() != time.UTC {
		t.Fatalf("time %v not UTC", d.Time)
	}
	if d.Domain != strings.ToLower(d.Domain) {
		t.Fatalf("domain %q not lowercase", d.Domain)
	}
	if len(d.Key) != 64 || strings.Trim(d.Key, "0123456789abcdef") != "" {
		t.Fatalf("key %q", d.Key)
	}
	if !isQueueID([]byte(d.QueueID)) || d.Relay == "" || !(strings.HasSuffix(d.Process, "mtp") || (strings.HasSuffix(d.Process, "/error") || strings.HasSuffix(d.Process, "/retry")) && d.Relay == "none") {
		t.Fatalf("bad delivery %+v", d)
	}
	switch d.TLSTrust {
	case "", delivery.Anonymous, delivery.Untrusted, delivery.Trusted, delivery.Verified:
	default:
		t.Fatalf("trust %q", d.TLSTrust)
	}
	if d.TLSRPT != "" {
		if st, err := ParseTLSRPTStatus(d.TLSRPT); err != nil || relayMX(d.Relay) != lowerASCII(st.MX) {
			t.Fatalf("TLSRPT status %q (%v) on %+v", d.TLSRPT, err, d)
		}
	}
	if len(d.TLSVerify) > maxVerifyLen || stateText([]byte(d.TLSVerify), maxVerifyLen) != d.TLSVerify {
		t.Fatalf("TLSVerify %q", d.TLSVerify)
	}
	if (d.TLS == nil || !*d.TLS) && (d.TLSTrust != "" || d.TLSCipher != "" || d.TLSProtocol != "" || d.TLSVerify != "") {
		t.Fatalf("TLS details without TLS: %+v", d)
	}
	if d.Fallback && (d.TLS == nil || *d.TLS || d.Status != delivery.Sent) {
		t.Fatalf("fallback that is not a plaintext sent: %+v", d)
	}
	if d.TLSFailure && d.Status == delivery.Sent {
		t.Fatalf("TLS failure on a sent delivery: %+v", d)
	}
	if d.Relay == "none" && d.TLS != nil {
		t.Fatalf("relay=none with TLS %v", *d.TLS)
	}
	for _, s := range []string{d.Recipient, d.OrigTo, d.Domain, d.Relay, d.Reason, d.LogHost, d.Process, d.DSN} {
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8 in %+v", d)
		}
	}
}

// BenchmarkCorrelator feeds a realistic generated log (three lines in four
// are not deliveries) and reports lines per second.
func BenchmarkCorrelator(b *testing.B) {
	var buf bytes.Buffer
	if _, err := gen.Log(&buf, gen.LogConfig{Seed: 1, Lines: 200000, Domains: 500}); err != nil {
		b.Fatal(err)
	}
	lines := splitLines(buf.Bytes())
	var size int64
	for _, l := range lines {
		size += int64(len(l)) + 1
	}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		c := NewCorrelator(Options{RefTime: time.Now(), Location: time.UTC})
		for _, l := range lines {
			c.Feed(l)
		}
	}
	b.ReportMetric(float64(b.N*len(lines))/time.Since(start).Seconds(), "lines/s")
}

func TestStatsPerFile(t *testing.T) {
	for name, want := range map[string]Stats{
		// tlsproxy copies are not client TLS lines.
		"tlsproxy-reuse.log": {Lines: 20, Deliveries: 5, TLSLines: 3},
		// A line without __REALTIME_TIMESTAMP and a truncated object are skipped.
		"journald.log":            {Lines: 12, Deliveries: 4, Skipped: 2, TLSLines: 2},
		"headers-traditional.log": {Lines: 9, Deliveries: 6, Skipped: 1, TLSLines: 1},
		"loglevel0.log":           {Lines: 10, Deliveries: 5},
	} {
		c := NewCorrelator(goldenOptions(name))
		feedAll(c, readLogLines(t, filepath.Join("testdata", name)))
		if got := c.Stats(); got != want {
			t.Errorf("%s: stats %+v, want %+v", name, got, want)
		}
	}
}

func feedStrings(c *Correlator, lines ...string) []delivery.Delivery {
	var out []delivery.Delivery
	for _, l := range lines {
		out = append(out, c.Feed([]byte(l))...)
	}
	return out
}

// TestFallbackAcrossProcesses: the handshake fails in one process, which
// logs "QID: Cannot start TLS" and dies; another process later sends the
// message in plaintext without a new error line.
func TestFallbackAcrossProcesses(t *testing.T) {
	c := NewCorrelator(goldenOptions(""))
	ds := feedStrings(c,
		"Nov 28 18:43:04 sender postfix/smtp[100]: SSL_connect error to tls1.test[127.0.1.4]:25: -1",
		"Nov 28 18:43:04 sender postfix/smtp[100]: C79CE985DD3: Cannot start TLS: handshake failure",
		"Nov 28 18:45:04 sender postfix/smtp[200]: C79CE985DD3: to=<u@tls1.test>, relay=TLS1.test[127.0.1.9]:25, delay=1.2, delays=1.2/0.01/0/0.01, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
		"Nov 28 18:45:05 sender postfix/smtp[200]: D79CE985DD3: to=<v@tls1.test>, relay=tls1.test[127.0.1.4]:25, delay=1.2, delays=1.2/0.01/0/0.01, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
	)
	if len(ds) != 2 {
		t.Fatalf("%d deliveries", len(ds))
	}
	// Same message, same relay host (another address, other case): fallback.
	if !ds[0].Fallback || ds[0].TLS == nil || *ds[0].TLS {
		t.Errorf("first: %+v", ds[0])
	}
	// Another message: plaintext, but no TLS line was ever seen, so unknown.
	if ds[1].Fallback || ds[1].TLS != nil {
		t.Errorf("second: %+v", ds[1])
	}
}

// TestBoundedState feeds many processes that leave sessions open and many
// failed handshakes, and checks that the maps stay within their caps while
// recent sessions still correlate.
func TestBoundedState(t *testing.T) {
	c := NewCorrelator(goldenOptions(""))
	c.maxProcs, c.maxFailed = 100, 200
	for i := 0; i < 5000; i++ {
		ds := feedStrings(c,
			fmt.Sprintf("Nov 28 10:00:00 h postfix/smtp[%d]: Trusted TLS connection established to mx%d.example[192.0.2.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", 10000+i, i),
			fmt.Sprintf("Nov 28 10:00:00 h postfix/smtp[%d]: %010X: to=<a@d%d.example>, relay=mx%d.example[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)", 10000+i, i, i, i),
			fmt.Sprintf("Nov 28 10:00:00 h postfix/smtp[%d]: SSL_connect error to bad%d.example[192.0.2.2]:25: -1", 90000+i, i),
			fmt.Sprintf("Nov 28 10:00:00 h postfix/smtp[%d]: %010X: to=<b@b%d.example>, relay=bad%d.example[192.0.2.2]:25, delay=1, delays=0/0/0/1, dsn=4.7.5, status=deferred (Cannot start TLS: handshake failure)", 90000+i, 1<<30+i, i, i),
		)
		if len(ds) != 2 || ds[0].TLS == nil || !*ds[0].TLS || ds[1].TLS == nil || *ds[1].TLS {
			t.Fatalf("round %d: %+v", i, ds)
		}
		if len(c.procs) > c.maxProcs || len(c.failed) > c.maxFailed {
			t.Fatalf("round %d: %d procs, %d failed entries", i, len(c.procs), len(c.failed))
		}
	}
	// The newest failure is still known: a plaintext retry is a fallback.
	ds := feedStrings(c, fmt.Sprintf("Nov 28 10:05:00 h postfix/smtp[1]: %010X: to=<b@b4999.example>, relay=bad4999.example[192.0.2.2]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)", 1<<30+4999))
	if !ds[0].Fallback {
		t.Errorf("recent failure forgotten: %+v", ds[0])
	}
}

// unusableTLSASession is lines 58-64 of testdata/real-postfix37-dane.log.
const unusableTLSASession = "Dec 02 14:25:31 sender postfix/smtpd[3969]: disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5\n" +
	"Dec 02 14:25:31 mx postfix/smtpd[4101]: connect from localhost[127.0.0.1]\n" +
	"Dec 02 14:25:31 sender postfix/smtp[4100]: warning: mx.tlsa-unusable.test[127.0.1.2]:25: unusable TLSA RR: 3 1 7 060B47513A228AA29ACBA378DABC23784E44C54D3FF103E5A94E0D2C1C3B3731\n" +
	"Dec 02 14:25:31 sender postfix/smtp[4100]: warning: mx.tlsa-unusable.test[127.0.1.2]:25: all TLSA records unusable\n" +
	"Dec 02 14:25:31 sender postfix/smtp[4100]: server certificate verification failed for mx.tlsa-unusable.test[127.0.1.2]:25: num=1:unspecified certificate verification error\n" +
	"Dec 02 14:25:31 sender postfix/smtp[4100]: Untrusted TLS connection established to mx.tlsa-unusable.test[127.0.1.2]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256\n" +
	"Dec 02 14:25:31 sender postfix/smtp[4100]: 905719B0B0B: to=<u@tlsa-unusable.test>, relay=mx.tlsa-unusable.test[127.0.1.2]:25, delay=0.01, delays=0/0/0/0, dsn=4.7.5, status=deferred (Server certificate not verified)\n"

// TestTLSAUnusable: under DANE, the "all TLSA records unusable" warning is
// the session's verification reason, not the vague verification failure
// after it; a warning for another relay, or a mangled one, is not.
func TestTLSAUnusable(t *testing.T) {
	feed := func(in string) []delivery.Delivery {
		c := NewCorrelator(goldenOptions(""))
		var out []delivery.Delivery
		for _, l := range strings.Split(strings.TrimSuffix(in, "\n"), "\n") {
			out = append(out, c.Feed([]byte(l))...)
		}
		return out
	}
	for _, tc := range []struct {
		name, in, want string
	}{
		{"real", unusableTLSASession, "all TLSA records unusable"},
		{"other relay", strings.Replace(unusableTLSASession, "warning: mx.tlsa-unusable.test[127.0.1.2]:25: all", "warning: mx.other.test[127.0.1.2]:25: all", 1),
			"num=1:unspecified certificate verification error"},
		{"not the whole text", strings.Replace(unusableTLSASession, "all TLSA records unusable", "all TLSA records unusable or not", 1),
			"num=1:unspecified certificate verification error"},
		{"no warning prefix", strings.Replace(unusableTLSASession, "warning: mx.tlsa-unusable.test[127.0.1.2]:25: all", "mx.tlsa-unusable.test[127.0.1.2]:25: all", 1),
			"num=1:unspecified certificate verification error"},
	} {
		var got []string
		for _, d := range feed(tc.in) {
			if d.Domain == "tlsa-unusable.test" {
				got = append(got, d.TLSVerify)
			}
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: TLSVerify %q, want [%q]", tc.name, got, tc.want)
		}
	}
}

// TestStateOwnsItsStrings: a delivery's strings share one allocation
// (fieldStrings); what the correlator keeps after the line (a session's
// queue id, handshake failures) must be copies, or each would keep the
// whole line's worth of memory that its budget does not count.
func TestStateOwnsItsStrings(t *testing.T) {
	c := NewCorrelator(goldenOptions(""))
	ds := feedStrings(c,
		"Nov 28 18:40:00 sender postfix/smtp[300]: Trusted TLS connection established to mx.a.example[192.0.2.5]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
		"Nov 28 18:40:01 sender postfix/smtp[300]: A79CE985DD3: to=<u@a.example>, relay=mx.a.example[192.0.2.5]:25, delay=1.2, delays=1.2/0.01/0/0.01, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
		"Nov 28 18:43:04 sender postfix/smtp[100]: SSL_connect error to tls1.test[127.0.1.4]:25: -1",
		"Nov 28 18:43:04 sender postfix/smtp[100]: C79CE985DD3: Cannot start TLS: handshake failure",
		"Nov 28 18:43:05 sender postfix/smtp[100]: C79CE985DD3: to=<v@tls1.test>, relay=tls1.test[127.0.1.4]:25, delay=1.2, delays=1.2/0.01/0/0.01, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
	)
	if len(ds) != 2 || ds[0].TLS == nil || !*ds[0].TLS || !ds[1].Fallback {
		t.Fatalf("deliveries %+v: want one encrypted, one fallback", ds)
	}
	// The memory of every string of the deliveries.
	type span struct{ lo, hi uintptr }
	var spans []span
	for _, d := range ds {
		for _, s := range []string{d.QueueID, d.Recipient, d.Relay, d.Key, d.LogHost, d.Process, d.DSN, d.Reason} {
			if s != "" {
				p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
				spans = append(spans, span{p, p + uintptr(len(s))})
			}
		}
	}
	shared := func(s string) bool {
		if s == "" {
			return false
		}
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		for _, sp := range spans {
			if p >= sp.lo && p < sp.hi {
				return true
			}
		}
		return false
	}
	kept := 0
	for key, p := range c.procs {
		for name, s := range map[string]string{"QID": p.QID, "FailQID": p.FailQID, "RPTQID": p.RPTQID} {
			if s != "" {
				kept++
			}
			if shared(s) {
				t.Errorf("process %s: %s %q shares a delivery's memory", key, name, s)
			}
		}
	}
	for k := range c.failed {
		kept++
		if shared(k.qid) || shared(k.host) {
			t.Errorf("handshake failure %+v shares a delivery's memory", k)
		}
	}
	if kept < 2 {
		t.Fatalf("the correlator kept %d strings of the deliveries; the test needs a session's queue id and a failure", kept)
	}
}
