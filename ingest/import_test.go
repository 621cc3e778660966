package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/bench/gen"
	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/store"
)

const (
	tlsLine  = "2026-11-20T10:00:00.000000+00:00 mx1 postfix/smtp[100]: Verified TLS connection established to mx.a.example[192.0.2.10]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\n"
	sentLine = "2026-11-20T10:00:01.000000+00:00 mx1 postfix/smtp[100]: 1A2B3C4D5E: to=<u@a.example>, relay=mx.a.example[192.0.2.10]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 ok)\n"
	localOne = "2026-11-20T10:00:02.000000+00:00 mx1 postfix/smtp[101]: 2B3C4D5E6F: to=<v@b.example>, relay=127.0.0.1[127.0.0.1]:10024, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 ok)\n"
)

// fakeBulk stores nothing and counts what it is given; Add fails with
// addErr once it has been given failAfter batches (if addErr is set).
type fakeBulk struct {
	batches, rows       int
	failAfter           int
	addErr              error
	committed, closed   bool
	commitErr, closeErr error
}

func (b *fakeBulk) PrepareBatch(ds []delivery.Delivery) (*store.Batch, error) {
	return store.PrepareBatch(ds)
}

func (b *fakeBulk) Add(_ context.Context, batch *store.Batch) (int, error) {
	if b.addErr != nil && b.batches >= b.failAfter {
		return 0, b.addErr
	}
	b.batches++
	b.rows += batch.Len()
	return batch.Len(), nil
}

func (b *fakeBulk) Commit(context.Context) error { b.committed = true; return b.commitErr }
func (b *fakeBulk) Close() error                 { b.closed = true; return b.closeErr }
func (b *fakeBulk) Committed() int {
	if b.committed && b.commitErr == nil {
		return b.rows
	}
	return 0
}
func (b *fakeBulk) Old() int { return 0 }

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func gzipped(data string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(data))
	zw.Close()
	return b.Bytes()
}

// TestImportFiles: plain, gzip-compressed and stdin input go through one
// correlator, in order, and the result counts what was read and stored.
func TestImportFiles(t *testing.T) {
	plain := writeFile(t, "mail.log.1", []byte(tlsLine+"garbage\n"))
	gz := writeFile(t, "mail.log.2.gz", gzipped(sentLine))
	var bk fakeBulk
	res, err := Import(context.Background(), &bk, []string{plain, gz, "-"}, ImportOptions{Stdin: strings.NewReader(localOne)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lines() != 4 || res.Stats.Skipped != 1 || res.Stats.Deliveries != 2 || res.Added != 2 || res.Committed != 2 || res.FirstSkipped != `"garbage"` {
		t.Errorf("result %+v, lines %d", res, res.Lines())
	}
	if bk.rows != 2 || !bk.committed || !bk.closed {
		t.Errorf("bulk %+v", bk)
	}
}

// TestImportMarksInternal: the relays rule marks the hops inside the host
// before they are stored, the built-in rule when none is given.
func TestImportMarksInternal(t *testing.T) {
	relays, err := logparse.ParseInternalRelays([]string{"mx.a.example"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		relays   *logparse.InternalRelays
		internal int
	}{{nil, 1}, {relays, 2}} {
		out := make(chan *store.Batch, 1)
		pr := startPreparer(orBuiltIn(tc.relays), store.PrepareBatch, out)
		p := &parser{opts: ImportOptions{}, ctx: context.Background(), out: pr.in, failed: &pr.failed,
			corr: logparse.NewCorrelator(logparse.Options{})}
		p.line([]byte(strings.TrimSuffix(sentLine, "\n")), false)
		p.line([]byte(strings.TrimSuffix(localOne, "\n")), false)
		batch := p.batch
		if err := p.send(); err != nil {
			t.Fatal(err)
		}
		close(pr.in)
		if err := <-pr.done; err != nil {
			t.Fatal(err)
		}
		if b := <-out; b == nil || b.Len() != len(batch) {
			t.Fatalf("the preparer passed on %v, want a batch of %d", b, len(batch))
		}
		n := 0
		for _, d := range batch {
			if d.Internal {
				n++
			}
		}
		if len(batch) != 2 || n != tc.internal {
			t.Errorf("relays %v: %d of %d deliveries internal, want %d", tc.relays, n, len(batch), tc.internal)
		}
	}
}

// TestImportTruncatedGzip: a .gz cut off mid-write (a rotation caught in
// the act) is read up to its last complete data, without an error.
func TestImportTruncatedGzip(t *testing.T) {
	var log strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&log, "2026-11-20T10:00:01.000000+00:00 mx1 postfix/smtp[100]: 1A2B3C%04X: to=<u%d@a.example>, relay=mx.a.example[192.0.2.10]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 ok)\n", i, i)
	}
	gz := gzipped(log.String())
	p := writeFile(t, "mail.log.1.gz", gz[:len(gz)/2])
	var bk fakeBulk
	res, err := Import(context.Background(), &bk, []string{p}, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Added == 0 || res.Added >= 2000 || res.Stats.Deliveries < int64(res.Added) {
		t.Errorf("truncated .gz: %d of 2000 deliveries stored, want some and not all (%+v)", res.Added, res)
	}
}

// TestImportBadInput: a file with a gzip magic but no gzip header, and one
// that does not exist, fail the import naming the file.
func TestImportBadInput(t *testing.T) {
	bad := writeFile(t, "bad.gz", []byte{0x1f, 0x8b, 7, 0, 0, 0, 0, 0, 0, 3, 'x', 'y'})
	for _, tc := range []struct{ name, want string }{
		{bad, bad + ": gzip: invalid header"},
		{filepath.Join(t.TempDir(), "missing"), "no such file or directory"},
	} {
		var bk fakeBulk
		_, err := Import(context.Background(), &bk, []string{tc.name}, ImportOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !bk.closed {
			t.Errorf("%s: err %v, bulk closed %v; want %q", tc.name, err, bk.closed, tc.want)
		}
	}
}

// TestImportWriteFails: a failed write ends the import with its error
// once the parser is done (the writer drains the rest: the parser never
// blocks on it), and the bulk writer is closed.
func TestImportWriteFails(t *testing.T) {
	var log strings.Builder
	for i := range 3 * importBatch {
		fmt.Fprintf(&log, "2026-11-20T10:00:01.000000+00:00 mx1 postfix/smtp[100]: 1A2B3C%04X: to=<u%d@a.example>, relay=mx.a.example[192.0.2.10]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 ok)\n", i, i)
	}
	full := errors.New("database or disk is full")
	bk := fakeBulk{addErr: full, failAfter: 1}
	res, err := Import(context.Background(), &bk, []string{"-"}, ImportOptions{Stdin: strings.NewReader(log.String())})
	if !errors.Is(err, full) || bk.committed || !bk.closed {
		t.Fatalf("err %v, bulk %+v", err, bk)
	}
	if res.Added != importBatch || res.Committed != 0 || res.Stats.Deliveries != 3*importBatch {
		t.Errorf("result %+v", res)
	}
}

// TestImportCanceled: an import stopped before it starts reads nothing and
// says why.
func TestImportCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var bk fakeBulk
	res, err := Import(ctx, &bk, []string{"-"}, ImportOptions{Stdin: strings.NewReader(sentLine)})
	if !errors.Is(err, context.Canceled) || res.Lines() != 0 || !bk.closed {
		t.Errorf("err %v, result %+v, bulk %+v", err, res, bk)
	}
}

// TestImportJournalTrust: journal entries that the trust rule does not
// believe are counted by reason and not fed.
func TestImportJournalTrust(t *testing.T) {
	fixture := filepath.Join("..", "logparse", "testdata", "journal", "forged.json")
	var bk fakeBulk
	calls := 0
	trust := func() (logparse.JournalTrust, error) {
		calls++
		return logparse.JournalTrust{UIDs: []uint32{100}}, nil
	}
	res, err := Import(context.Background(), &bk, []string{fixture}, ImportOptions{Trust: trust})
	if err != nil {
		t.Fatal(err)
	}
	if res.Lines() != 14 || res.Added != 5 || res.Untrusted.Total() != 5 || res.Untrusted.String() != "no_uid=1 uid=2 comm=1 ambiguous=1" {
		t.Errorf("lines %d, added %d, untrusted %d (%s)", res.Lines(), res.Added, res.Untrusted.Total(), res.Untrusted)
	}
	if calls != 1 || len(res.Trust.UIDs) != 1 || res.Trust.UIDs[0] != 100 {
		t.Errorf("the trust rule was asked for %d times (want once); result's rule %+v", calls, res.Trust)
	}
}

// TestImportTrustAtFirstJournalEntry: the trust rule is asked for only
// when a journal entry comes (an import of syslog files never looks up the
// Postfix user), and its error ends the import; nil believes root alone.
func TestImportTrustAtFirstJournalEntry(t *testing.T) {
	syslog := writeFile(t, "mail.log", []byte(tlsLine+sentLine))
	var bk fakeBulk
	res, err := Import(context.Background(), &bk, []string{syslog}, ImportOptions{Trust: func() (logparse.JournalTrust, error) {
		t.Error("the trust rule was asked for in an import of a syslog file")
		return logparse.JournalTrust{}, nil
	}})
	if err != nil || res.Added == 0 {
		t.Fatalf("syslog import: %+v, %v", res, err)
	}
	journal := filepath.Join("..", "logparse", "testdata", "journal", "forged.json")
	lookupFailed := errors.New("--postfix-user \"postfix\": lookup failed")
	bk = fakeBulk{}
	_, err = Import(context.Background(), &bk, []string{syslog, journal}, ImportOptions{Trust: func() (logparse.JournalTrust, error) {
		return logparse.JournalTrust{}, lookupFailed
	}})
	if !errors.Is(err, lookupFailed) || !bk.closed {
		t.Errorf("import with a failing trust rule: err %v, bulk closed %v; want the rule's error", err, bk.closed)
	}
	bk = fakeBulk{}
	res, err = Import(context.Background(), &bk, []string{journal}, ImportOptions{})
	if err != nil || res.Untrusted.Count(logparse.JournalBadUID) <= 2 {
		t.Errorf("import with no trust rule: %v, untrusted %s; want more uid refusals than the 2 with uid 100 believed", err, res.Untrusted)
	}
}

func TestIsJournalEntry(t *testing.T) {
	trust := logparse.JournalTrust{UIDs: []uint32{100}}
	for _, tc := range []struct {
		line    string
		journal bool
		want    logparse.JournalVerdict
	}{
		{strings.TrimSuffix(sentLine, "\n"), false, 0},
		{"", false, 0},
		{" \t", false, 0},
		{`{"MESSAGE":"1A2B3C4D5E: to=<u@a.example>, relay=mx.a.example[192.0.2.10]:25, status=sent (250 ok)","SYSLOG_IDENTIFIER":"postfix/smtp","_COMM":"smtp","_PID":"7"}`, true, logparse.JournalNoUID},
		{`  {"MESSAGE":"x","SYSLOG_IDENTIFIER":"postfix/smtp","_COMM":"smtp","_UID":"4242","_PID":"7"}`, true, logparse.JournalBadUID},
	} {
		line := []byte(tc.line)
		if got := isJournalEntry(line); got != tc.journal {
			t.Errorf("isJournalEntry(%.40q) = %v", tc.line, got)
		} else if got && trust.Check(line) != tc.want {
			t.Errorf("Check(%.40q) = %v, want %v", tc.line, trust.Check(line), tc.want)
		}
	}
}

func TestProgress(t *testing.T) {
	for _, tc := range []struct {
		n, total int64
		want     string
	}{
		{512, 0, "\r512 B read"},
		{3 << 20, 0, "\r3.0 MiB read"},
		{1536, 3072, "\r[###############...............]  50%  1.5 KiB"},
		{5 << 30, 1 << 30, "\r[##############################] 100%  5.0 GiB"},
	} {
		var b bytes.Buffer
		drawProgress(&b, tc.n, tc.total)
		if b.String() != tc.want {
			t.Errorf("drawProgress(%d, %d) = %q, want %q", tc.n, tc.total, b.String(), tc.want)
		}
	}
}

// reuseBulk is a real store's Bulk that notes the first element of each
// slice of deliveries it prepares, to see the import reuse released ones.
type reuseBulk struct {
	*store.Bulk
	firsts map[*delivery.Delivery]int
}

func (b *reuseBulk) PrepareBatch(ds []delivery.Delivery) (*store.Batch, error) {
	if len(ds) > 0 {
		b.firsts[&ds[0]]++
	}
	return b.Bulk.PrepareBatch(ds)
}

// TestImportReusesReleasedBatches: an import of many batches, which reuses
// the slices of deliveries that the store has released (Batch.SetRelease),
// stores exactly what the log says, delivery by delivery: a slice reused
// too early would store another batch's deliveries (that the rollups
// count what was stored is TestBulkReleaseAfterCounting).
func TestImportReusesReleasedBatches(t *testing.T) {
	var buf bytes.Buffer
	truth, err := gen.Log(&buf, gen.LogConfig{Seed: 5, Lines: 80_000})
	if err != nil {
		t.Fatal(err)
	}
	if len(truth.Deliveries) < 6*importBatch {
		t.Fatalf("%d deliveries: the test needs 6 batches or more", len(truth.Deliveries))
	}
	path := writeFile(t, "mail.log", buf.Bytes())
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bk := &reuseBulk{Bulk: st.Bulk(), firsts: map[*delivery.Delivery]int{}}
	res, err := Import(ctx, bk, []string{path}, ImportOptions{})
	if err != nil || res.Committed != len(truth.Deliveries) {
		t.Fatalf("import: %+v, %v; want %d deliveries", res, err, len(truth.Deliveries))
	}
	reused := 0
	for _, n := range bk.firsts {
		reused += n - 1
	}
	// How many are reused depends on how far the store's counting is
	// behind the parser: it is a figure, not a result.
	t.Logf("%d of %d batches in reused slices", reused, len(truth.Deliveries)/importBatch+1)
	type fields struct {
		qid, rcpt, relay, status, trust, proto, cipher string
		tls                                            int
		fallback, tlsFailure                           bool
	}
	tlsOf := func(p *bool) int {
		if p == nil {
			return 2
		}
		if *p {
			return 1
		}
		return 0
	}
	want := map[string]int{}
	for _, d := range truth.Deliveries {
		k := fmt.Sprint(d.Time.UnixMicro(), fields{d.QueueID, d.Recipient, d.Relay, string(d.Status), string(d.TLSTrust), d.TLSProtocol, d.TLSCipher, tlsOf(d.TLS), d.Fallback, d.TLSFailure})
		want[k]++
	}
	err = st.Deliveries(ctx, store.Filter{}, func(d delivery.Delivery) error {
		k := fmt.Sprint(d.Time.UnixMicro(), fields{d.QueueID, d.Recipient, d.Relay, string(d.Status), string(d.TLSTrust), d.TLSProtocol, d.TLSCipher, tlsOf(d.TLS), d.Fallback, d.TLSFailure})
		if want[k] == 0 {
			t.Errorf("stored %s, which the log does not have (or not that often)", k)
		}
		want[k]--
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, n := range want {
		if n > 0 {
			t.Errorf("not stored: %s", k)
		}
	}
}
