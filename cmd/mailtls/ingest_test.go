package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/bench/gen"
	"github.com/mailtls/mailtls/logparse"
)

const (
	tlsLine  = "2026-11-20T10:00:00.000000+00:00 mx1 postfix/smtp[100]: Verified TLS connection established to mx.a.example[192.0.2.10]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n"
	sentLine = "2026-11-20T10:00:01.000000+00:00 mx1 postfix/smtp[100]: 1A2B3C4D5E: to=<u@a.example>, relay=mx.a.example[192.0.2.10]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 ok)\n"
	plainOne = "2026-11-20T10:00:02.000000+00:00 mx1 postfix/smtp[101]: 2B3C4D5E6F: to=<v@b.example>, relay=mx.b.example[192.0.2.11]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 ok)\n"
)

// TestImportGarbage: garbage of every kind is counted as skipped, never
// stops the lines after it, and a second import adds nothing.
func TestImportGarbage(t *testing.T) {
	c := newCLI(t)
	var log bytes.Buffer
	log.WriteString(tlsLine)
	log.WriteString("\x00\x00\x00binary\xff\xfe garbage\n")
	log.WriteString("Nov 20 10:00:0\n") // truncated header
	log.WriteString("\xc3\x28 invalid utf-8 \xa0\xa1\n")
	log.WriteString(strings.Repeat("x", 10<<20) + "\n") // a 10 MB line
	log.WriteString(sentLine)
	log.WriteString("2026-11-20T10:00:01.5+00:00 mx1 postfix/smtp[101]: 2B3C4D5E6F: to=<v@b.exa") // truncated line...
	log.WriteString("\n")
	log.WriteString(plainOne)
	dir := t.TempDir()
	plain := filepath.Join(dir, "mail.log")
	if err := os.WriteFile(plain, log.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := c.ok("import", plain)
	if !strings.Contains(out, "8 lines read, 2 deliveries stored") || !strings.Contains(out, "5 lines skipped as malformed") {
		t.Errorf("summary: %q", out)
	}
	if strings.Count(out, "\n") != 1 {
		t.Errorf("want a one-line summary, got %q", out)
	}
	var rows []deliveryJSON
	for _, l := range strings.Split(strings.TrimSpace(c.ok("deliveries")), "\n") {
		var r deliveryJSON
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	if len(rows) != 2 || rows[0].TLS == nil || !*rows[0].TLS || rows[1].TLS == nil || *rows[1].TLS {
		t.Fatalf("rows: %+v", rows)
	}

	// The same lines again, gzip-compressed: nothing new.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(log.Bytes())
	zw.Close()
	gzFile := filepath.Join(dir, "mail.log.1.gz")
	if err := os.WriteFile(gzFile, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out = c.ok("import", gzFile)
	if !strings.Contains(out, "0 deliveries stored (2 already present)") {
		t.Errorf("re-import of .gz: %q", out)
	}
	// And from stdin.
	o, _, code := c.run(log.String(), "import", "-")
	if code != 0 || !strings.Contains(o, "0 deliveries stored") {
		t.Errorf("stdin import: %d %q", code, o)
	}
}

// TestImportLoglevelZero: without TLS summary lines, TLS is unknown and
// import says how to turn TLS logging on.
func TestImportLoglevelZero(t *testing.T) {
	c := newCLI(t)
	out, errs, code := c.run(sentLine+plainOne, "import", "-")
	if code != 0 || !strings.Contains(out, "2 deliveries stored") {
		t.Fatalf("import: %d %q %q", code, out, errs)
	}
	if !strings.Contains(errs, "smtp_tls_loglevel=1") {
		t.Errorf("no hint about TLS logging: %q", errs)
	}
	var s map[string]any
	if err := json.Unmarshal([]byte(c.ok("report", "--format", "json", "--since", "2026-11-19", "--until", "2026-11-21")), &s); err != nil {
		t.Fatal(err)
	}
	if s["unknown"] != float64(2) || s["plaintext"] != float64(0) || s["encrypted"] != float64(0) {
		t.Errorf("loglevel 0 report: %v", s)
	}
}

// cancelAfter is a reader that cancels ctx once n bytes have been read.
type cancelAfter struct {
	r      *bytes.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	if len(p) > 4096 {
		p = p[:4096]
	}
	k, err := c.r.Read(p)
	c.n -= k
	return k, err
}

// TestImportInterrupted: an import stopped half-way (Ctrl-C) says so, and
// says what to do; running the same import again stores exactly what one
// uninterrupted import stores, nothing lost and nothing twice.
func TestImportInterrupted(t *testing.T) {
	var buf bytes.Buffer
	truth, err := gen.Log(&buf, gen.LogConfig{Seed: 5, Lines: 60_000, Domains: 80})
	if err != nil {
		t.Fatal(err)
	}
	c := newCLI(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := &cancelAfter{r: bytes.NewReader(buf.Bytes()), n: buf.Len() / 2, cancel: cancel}
	var out, errb bytes.Buffer
	code := Run(ctx, []string{"mailtls", "import", "-"}, env{stdin: in, stdout: &out, stderr: &errb, getenv: c.getenv})
	if code != 1 || !strings.Contains(errb.String(), "import interrupted after") || !strings.Contains(errb.String(), "run the same import again") {
		t.Fatalf("interrupted import: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	if n := strings.Count(strings.TrimSpace(errb.String()), "\n"); n != 0 {
		t.Errorf("error is %d lines: %q", n+1, errb.String())
	}
	out2, errs, code := c.run(buf.String(), "import", "-")
	if code != 0 {
		t.Fatalf("second import: exit %d, %q", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(c.ok("deliveries", "--format", "jsonl", "--since", "2000-01-01")), "\n")
	keys := map[string]bool{}
	for _, l := range lines {
		var row map[string]any
		if err := json.Unmarshal([]byte(l), &row); err != nil {
			t.Fatalf("%v: %q", err, l)
		}
		keys[fmt.Sprint(row["time"], row["queue_id"], row["recipient"], row["status"])] = true
	}
	if len(lines) != len(truth.Deliveries) || len(keys) != len(lines) {
		t.Errorf("after an interrupted import and a rerun: %d deliveries stored (%d distinct), the log has %d (%s)", len(lines), len(keys), len(truth.Deliveries), out2)
	}
}

// TestImportFollowSameLines: import and follow read a log with the same
// line reader (logparse.LineReader's rules, one cap): the same lines are
// read, skipped and stored, CRLF lines included, and import's summary
// quotes the first skipped line with control characters escaped.
func TestImportFollowSameLines(t *testing.T) {
	var log bytes.Buffer
	log.WriteString(tlsLine)
	log.WriteString("\x1b[2Jgarbage\x00 \xff\n")
	// A 300 KiB delivery line: longer than any Postfix record.
	log.WriteString(strings.TrimSuffix(sentLine, "(250 ok)\n") + "(250 " + strings.Repeat("k", 300<<10) + ")\n")
	log.WriteString(strings.Replace(sentLine, "\n", "\r\n", 1))
	log.WriteString(strings.Repeat("y", 2<<20) + "\n")
	log.WriteString(strings.TrimSuffix(plainOne, "\n")) // no newline at the end
	path := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(path, log.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	c := newCLI(t)
	out := c.ok("import", path)
	var lines, stored, present, skipped int
	if _, err := fmt.Sscanf(out, "%d lines read, %d deliveries stored (%d already present), %d lines skipped as malformed", &lines, &stored, &present, &skipped); err != nil {
		t.Fatalf("summary %q: %v", out, err)
	}
	if want := `the first: "\x1b[2Jgarbage\x00 \xff"`; !strings.Contains(out, want) {
		t.Errorf("summary %q does not quote the first skipped line as %s", out, want)
	}

	// The follower, on the same file (it is final: read to its end).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var st logparse.Stats
	var keys []string
	f := &logparse.Follower{Path: path, NewCorrelator: func() *logparse.Correlator {
		return logparse.NewCorrelator(logparse.Options{})
	}}
	err := f.Run(ctx, logparse.Checkpoint{}, func(_ context.Context, b logparse.Batch) error {
		st = b.Stats
		for _, d := range b.Deliveries {
			keys = append(keys, d.Key)
		}
		if st.Lines >= 5 {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The follower holds the last line back until its newline arrives.
	if int64(lines) != st.Lines+1 || int64(skipped) != st.Skipped || stored != len(keys)+1 {
		t.Errorf("import read %d lines, skipped %d, stored %d; follow read %d, skipped %d, stored %d (+1 held line)",
			lines, skipped, stored, st.Lines, st.Skipped, len(keys))
	}
	if lines != 6 || skipped != 3 || stored != 2 {
		t.Errorf("import: %q", out)
	}
	// Same keys: a CRLF line is one line, whoever reads it.
	rows := strings.Split(strings.TrimSpace(c.ok("deliveries", "--format", "jsonl", "--since", "2000-01-01")), "\n")
	if len(rows) != 2 || len(keys) != 1 {
		t.Fatalf("rows %q, follower keys %q", rows, keys)
	}
	cr := bytes.Index(log.Bytes(), []byte("\r\n"))
	start := bytes.LastIndexByte(log.Bytes()[:cr], '\n') + 1
	if want := fmt.Sprintf("%x", sha256.Sum256(log.Bytes()[start:cr])); keys[0] != want {
		t.Errorf("follower key %s, want the hash of the line without CR %s", keys[0], want)
	}
}

// TestErrorDeferralsCountAsTLS: deferrals that error(8) logs for a
// destination suspended after a TLS failure count as TLS deferrals in
// report and report overrides; other suspended deferrals count as
// deferrals only.
func TestErrorDeferralsCountAsTLS(t *testing.T) {
	tmpl := "2026-11-28T07:00:00.000000+00:00 edge postfix/smtp[4400]: 1A2B3C4D5E: to=<a@enc.example>, relay=mx.enc.example[192.0.2.40]:25, delay=0.2, delays=0/0/0.2/0, dsn=4.7.4, status=deferred (TLS is required, but was not offered by host mx.enc.example[192.0.2.40])\n" +
		"2026-11-28T07:00:01.000000+00:00 edge postfix/error[4404]: 2B3C4D5E6F: to=<b@enc.example>, relay=none, delay=0.01, delays=0/0/0/0.01, dsn=4.7.4, status=deferred (delivery temporarily suspended: TLS is required, but was not offered by host mx.enc.example[192.0.2.40])\n" +
		"2026-11-28T07:00:02.000000+00:00 edge postfix/error[4404]: 3C4D5E6F70: to=<c@enc.example>, relay=none, delay=0.01, delays=0/0/0/0.01, dsn=4.7.4, status=deferred (delivery temporarily suspended: TLS is required, but was not offered by host mx.enc.example[192.0.2.40])\n" +
		"2026-11-28T07:00:03.000000+00:00 edge postfix/error[4404]: 4D5E6F7081: to=<d@down.example>, relay=none, delay=0.01, delays=0/0/0/0.01, dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to mx.down.example[192.0.2.41]:25: Connection refused)\n"
	c := newCLI(t)
	c.ok("policy", "set", "enc.example", "encrypt")
	// report overrides counts only what came while the override was in
	// force, so the deliveries are logged from the second it was set on.
	at := time.Now().UTC().Truncate(time.Second)
	log := tmpl
	for i := range 4 {
		log = strings.Replace(log, fmt.Sprintf("2026-11-28T07:00:0%d.000000+00:00", i), at.Add(time.Duration(i)*time.Microsecond).Format("2006-01-02T15:04:05.000000+00:00"), 1)
	}
	if out, errs, code := c.run(log, "import", "-"); code != 0 || !strings.Contains(out, "4 deliveries stored") {
		t.Fatalf("import: %d %q %q", code, out, errs)
	}
	var s map[string]any
	if err := json.Unmarshal([]byte(c.ok("report", "--format", "json", "--since", "2000-01-01")), &s); err != nil {
		t.Fatal(err)
	}
	if s["deferred"] != float64(4) || s["tls_deferred"] != float64(3) {
		t.Errorf("report: deferred %v, tls_deferred %v; want 4 and 3", s["deferred"], s["tls_deferred"])
	}
	var o map[string][]map[string]any
	if err := json.Unmarshal([]byte(c.ok("report", "overrides", "--format", "json", "--since", "2000-01-01")), &o); err != nil {
		t.Fatal(err)
	}
	rows := o["rows"]
	if len(rows) != 1 || rows[0]["key"] != "enc.example" || rows[0]["deferred"] != float64(3) || rows[0]["tls_deferred"] != float64(3) {
		t.Errorf("report overrides: %v", o)
	}
}
