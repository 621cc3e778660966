package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

func keyOf(i int) string {
	h := sha256.Sum256([]byte(fmt.Sprint("line ", i)))
	return hex.EncodeToString(h[:])
}

func bptr(b bool) *bool { return &b }

// testDelivery is a sent, encrypted delivery with a unique key.
func testDelivery(i int, at time.Time, domain string) delivery.Delivery {
	return delivery.Delivery{
		Time: at, LogHost: "mx", Process: "postfix/smtp", PID: 100 + i,
		QueueID: fmt.Sprintf("Q%d", i), Recipient: fmt.Sprintf("u%d@%s", i, domain), Domain: domain,
		Relay: "mx." + domain + "[192.0.2.1]:25", Status: delivery.Sent, DSN: "2.0.0", Reason: "250 ok",
		TLS: bptr(true), TLSTrust: "trusted", TLSProtocol: "TLSv1.3", TLSCipher: "TLS_AES_256_GCM_SHA384",
		Key: keyOf(i),
	}
}

func allDeliveries(t *testing.T, s *Store, f Filter) []delivery.Delivery {
	t.Helper()
	var out []delivery.Delivery
	if err := s.Deliveries(context.Background(), f, func(d delivery.Delivery) error {
		out = append(out, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

type rollupRow struct {
	bucket                  int64
	rdomain, status         string
	tls                     int64
	trust, protocol, cipher string
	fallback, tlsFailure    bool
	relayHost               string
	relayPort, n            int64
}

// dumpRollups returns the rollup tables as sorted strings.
func dumpRollups(t *testing.T, s *Store) (day, hour []string) {
	t.Helper()
	r, _ := s.reader()
	for _, q := range []struct {
		sql string
		dst *[]string
	}{
		{`SELECT false, day, rdomain, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, n FROM rollup_day
			UNION ALL SELECT true, day, rdomain, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, n FROM rollup_day_internal`, &day},
		{`SELECT false, hour, '', status, tls, trust, protocol, cipher, fallback, tls_failure, '', 0, n FROM rollup_hour
			UNION ALL SELECT true, hour, '', status, tls, trust, protocol, cipher, fallback, tls_failure, '', 0, n FROM rollup_hour_internal`, &hour},
	} {
		rows, err := r.Query(q.sql)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var x rollupRow
			var internal bool
			if err := rows.Scan(&internal, &x.bucket, &x.rdomain, &x.status, &x.tls, &x.trust, &x.protocol, &x.cipher, &x.fallback, &x.tlsFailure, &x.relayHost, &x.relayPort, &x.n); err != nil {
				t.Fatal(err)
			}
			*q.dst = append(*q.dst, fmt.Sprintf("%v|%d|%s|%s|%d|%s|%s|%s|%v|%v|%s|%d|%d", internal, x.bucket, x.rdomain, x.status, x.tls, x.trust, x.protocol, x.cipher, x.fallback, x.tlsFailure, x.relayHost, x.relayPort, x.n))
		}
		rows.Close()
	}
	sort.Strings(day)
	sort.Strings(hour)
	return day, hour
}

// expectRollups computes the rollup tables from the stored raw rows, with
// code independent of the store's aggregation.
func expectRollups(t *testing.T, s *Store) (day, hour []string) {
	t.Helper()
	dc, hc := map[string]int{}, map[string]int{}
	for _, d := range allDeliveries(t, s, Filter{}) {
		us := d.Time.UnixMicro()
		tls := 2
		if d.TLS != nil {
			tls = map[bool]int{false: 0, true: 1}[*d.TLS]
		}
		host, port := strings.ToLower(d.Relay), 0
		if i := strings.Index(host, "["); i >= 0 {
			rest := host[i:]
			host = host[:i]
			if j := strings.LastIndex(rest, "]:"); j >= 0 {
				fmt.Sscan(rest[j+2:], &port)
			}
		}
		rd := []rune(d.Domain)
		for i, j := 0, len(rd)-1; i < j; i, j = i+1, j-1 {
			rd[i], rd[j] = rd[j], rd[i]
		}
		day := us / (86400 * 1e6)
		hr := us / (3600 * 1e6)
		dc[fmt.Sprintf("%v|%d|%s|%s|%d|%s|%s|%s|%v|%v|%s|%d", d.Internal, day, string(rd), d.Status, tls, d.TLSTrust, d.TLSProtocol, d.TLSCipher, d.Fallback, d.TLSFailure, host, port)]++
		hc[fmt.Sprintf("%v|%d|%s|%s|%d|%s|%s|%s|%v|%v|%s|%d", d.Internal, hr, "", d.Status, tls, d.TLSTrust, d.TLSProtocol, d.TLSCipher, d.Fallback, d.TLSFailure, "", 0)]++
	}
	for k, n := range dc {
		day = append(day, fmt.Sprintf("%s|%d", k, n))
	}
	for k, n := range hc {
		hour = append(hour, fmt.Sprintf("%s|%d", k, n))
	}
	sort.Strings(day)
	sort.Strings(hour)
	return day, hour
}

func checkRollups(t *testing.T, s *Store) {
	t.Helper()
	gd, gh := dumpRollups(t, s)
	wd, wh := expectRollups(t, s)
	if !reflect.DeepEqual(gd, wd) {
		t.Errorf("rollup_day differs from raw rows:\n got %v\nwant %v", gd, wd)
	}
	if !reflect.DeepEqual(gh, wh) {
		t.Errorf("rollup_hour differs from raw rows:\n got %v\nwant %v", gh, wh)
	}
}

func TestCommitBatchIdempotent(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	ds := randomDeliveries(1, 400, t0.Add(-72*time.Hour), 72*time.Hour)
	first, second := ds[:300], ds[200:]

	n, err := s.CommitBatch(ctx, "/var/log/mail.log", first, []byte("cp1"))
	if err != nil || n != 300 {
		t.Fatalf("first batch: %d, %v", n, err)
	}
	checkRollups(t, s)
	day1, hour1 := dumpRollups(t, s)

	n, err = s.CommitBatch(ctx, "/var/log/mail.log", first, []byte("cp1"))
	if err != nil || n != 0 {
		t.Fatalf("same batch again: added %d, %v; want 0", n, err)
	}
	day2, hour2 := dumpRollups(t, s)
	if !reflect.DeepEqual(day1, day2) || !reflect.DeepEqual(hour1, hour2) {
		t.Error("rollups changed by a duplicate batch")
	}

	n, err = s.CommitBatch(ctx, "/var/log/mail.log", second, []byte("cp2"))
	if err != nil || n != 100 {
		t.Fatalf("overlapping batch: %d, %v; want 100", n, err)
	}
	// A batch that repeats a key within itself.
	n, err = s.AddDeliveries(ctx, []delivery.Delivery{ds[0], ds[0]})
	if err != nil || n != 0 {
		t.Fatalf("dup within batch: %d, %v", n, err)
	}
	got := allDeliveries(t, s, Filter{})
	if len(got) != 400 {
		t.Fatalf("stored %d deliveries, want 400", len(got))
	}
	checkRollups(t, s)
	cp, err := s.Checkpoint(ctx, "/var/log/mail.log")
	if err != nil || string(cp) != "cp2" {
		t.Errorf("checkpoint %q, %v", cp, err)
	}
}

func TestCheckpointAtomic(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	if cp, err := s.Checkpoint(ctx, "journal"); err != nil || cp != nil {
		t.Fatalf("no checkpoint yet: %q, %v", cp, err)
	}
	ds := randomDeliveries(2, 50, t0.Add(-24*time.Hour), 24*time.Hour)
	if _, err := s.CommitBatch(ctx, "journal", ds[:20], []byte("c1")); err != nil {
		t.Fatal(err)
	}
	day0, hour0 := dumpRollups(t, s)

	w, _ := s.writer()
	// Failing the checkpoint write must drop the rows of the batch.
	if _, err := w.Exec(`CREATE TEMP TRIGGER fail_cp BEFORE UPDATE ON checkpoints BEGIN SELECT RAISE(ABORT, 'boom'); END`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CommitBatch(ctx, "journal", ds[20:], []byte("c2")); err == nil {
		t.Fatal("commit with failing checkpoint succeeded")
	}
	if _, err := w.Exec(`DROP TRIGGER temp.fail_cp`); err != nil {
		t.Fatal(err)
	}
	// Failing a row must keep the old checkpoint.
	if _, err := w.Exec(`CREATE TEMP TRIGGER fail_row BEFORE INSERT ON deliveries WHEN json_extract(NEW.detail, '$[0]') = '` + ds[30].QueueID + `' BEGIN SELECT RAISE(ABORT, 'boom'); END`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CommitBatch(ctx, "journal", ds[20:], []byte("c2")); err == nil {
		t.Fatal("commit with failing row succeeded")
	}
	if _, err := w.Exec(`DROP TRIGGER temp.fail_row`); err != nil {
		t.Fatal(err)
	}

	if got := allDeliveries(t, s, Filter{}); len(got) != 20 {
		t.Errorf("after failed commits: %d rows, want 20", len(got))
	}
	if cp, _ := s.Checkpoint(ctx, "journal"); string(cp) != "c1" {
		t.Errorf("checkpoint %q, want c1", cp)
	}
	day1, hour1 := dumpRollups(t, s)
	if !reflect.DeepEqual(day0, day1) || !reflect.DeepEqual(hour0, hour1) {
		t.Error("rollups changed by failed commits")
	}
	n, err := s.CommitBatch(ctx, "journal", ds[20:], []byte("c2"))
	if err != nil || n != 30 {
		t.Fatalf("retry: %d, %v", n, err)
	}
	if cp, _ := s.Checkpoint(ctx, "journal"); string(cp) != "c2" {
		t.Errorf("checkpoint %q, want c2", cp)
	}
	checkRollups(t, s)
}

func TestCommitBatchValidation(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	good := testDelivery(1, t0, "example.com")
	for name, mod := range map[string]func(*delivery.Delivery){
		"short key":  func(d *delivery.Delivery) { d.Key = "abcd" },
		"non-hex":    func(d *delivery.Delivery) { d.Key = strings.Repeat("zz", 32) },
		"bad status": func(d *delivery.Delivery) { d.Status = "queued" },
		"zero time":  func(d *delivery.Delivery) { d.Time = time.Time{} },
	} {
		d := good
		mod(&d)
		if _, err := s.CommitBatch(ctx, "src", []delivery.Delivery{good, d}, []byte("x")); !errors.Is(err, ErrBadInput) {
			t.Errorf("%s: %v, want ErrBadInput", name, err)
		}
	}
	if _, err := s.CommitBatch(ctx, "", []delivery.Delivery{good}, nil); !errors.Is(err, ErrBadInput) {
		t.Errorf("empty source: %v", err)
	}
	if got := allDeliveries(t, s, Filter{}); len(got) != 0 {
		t.Errorf("invalid batches stored %d rows", len(got))
	}
	if cp, _ := s.Checkpoint(ctx, "src"); cp != nil {
		t.Errorf("invalid batches stored checkpoint %q", cp)
	}
}

func TestDeliveriesRoundTripAndFilter(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	in := []delivery.Delivery{
		testDelivery(1, t0.Add(3*time.Second+123456*time.Microsecond), "example.com"),
		testDelivery(2, t0.Add(1*time.Second), "a.example.com"),
		testDelivery(3, t0.Add(2*time.Second), "xexample.com"),
		testDelivery(4, t0.Add(2*time.Second), "b.a.example.com"),
		testDelivery(5, t0.Add(5*time.Second), "other.org"),
	}
	in[1].TLS, in[1].TLSTrust, in[1].TLSProtocol, in[1].TLSCipher = nil, "", "", ""
	in[2].TLS, in[2].Fallback, in[2].TLSTrust, in[2].TLSProtocol, in[2].TLSCipher = bptr(false), true, "", "", ""
	in[3].Status, in[3].TLSFailure, in[3].OrigTo, in[3].DSN = delivery.Deferred, true, "alias@example.com", "4.7.5"
	if _, err := s.AddDeliveries(ctx, in); err != nil {
		t.Fatal(err)
	}
	got := allDeliveries(t, s, Filter{})
	want := []delivery.Delivery{in[1], in[2], in[3], in[0], in[4]} // time order, ties in insertion order
	for i := range want {
		want[i].Time = want[i].Time.UTC()
		want[i].Host = s.Host() // the writer's, DefaultHost
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
	keys := func(f Filter) []string {
		var ks []string
		for _, d := range allDeliveries(t, s, f) {
			ks = append(ks, d.QueueID)
		}
		return ks
	}
	for _, tc := range []struct {
		f    Filter
		want []string
	}{
		{Filter{Domain: "example.com"}, []string{"Q1"}},
		{Filter{Domain: "EXAMPLE.com."}, []string{"Q1"}},
		{Filter{Domain: "*.example.com"}, []string{"Q2", "Q4", "Q1"}},
		{Filter{Domain: ".example.com"}, []string{"Q2", "Q4"}},
		{Filter{Since: t0.Add(2 * time.Second)}, []string{"Q3", "Q4", "Q1", "Q5"}},
		{Filter{Since: t0.Add(2 * time.Second), Until: t0.Add(3*time.Second + 123456*time.Microsecond)}, []string{"Q3", "Q4"}},
		{Filter{Until: t0.Add(2 * time.Second)}, []string{"Q2"}},
	} {
		if got := keys(tc.f); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("filter %+v: %v, want %v", tc.f, got, tc.want)
		}
	}
	for _, bad := range []string{"*", "a b.com", "*.*.com", "ex*.com", "-", "a..b"} {
		if err := s.Deliveries(ctx, Filter{Domain: bad}, func(delivery.Delivery) error { return nil }); !errors.Is(err, ErrBadInput) {
			t.Errorf("filter %q: %v, want ErrBadInput", bad, err)
		}
	}
	stop := errors.New("stop")
	n := 0
	if err := s.Deliveries(ctx, Filter{}, func(delivery.Delivery) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("callback error: %v after %d", err, n)
	}
}

func TestDeliveriesFilterMatchesRawRows(t *testing.T) {
	s, ds := fixture(t)
	// Make one domain sparse: only a few days have mail for it.
	ctx := context.Background()
	var b builder
	sparse := []delivery.Delivery{
		b.d(t0.Add(-9*24*time.Hour+time.Hour), "sparse.example", delivery.Sent, bptr(true), "trusted"),
		b.d(t0.Add(-9*24*time.Hour+2*time.Hour), "sparse.example", delivery.Sent, bptr(true), "trusted"),
		b.d(t0.Add(-5*24*time.Hour), "sparse.example", delivery.Sent, bptr(false), ""),
		b.d(t0.Add(-4*24*time.Hour), "sparse.example", delivery.Deferred, nil, ""),
		b.d(t0.Add(-time.Minute), "sparse.example", delivery.Sent, bptr(true), "trusted"),
	}
	if _, err := s.AddDeliveries(ctx, sparse); err != nil {
		t.Fatal(err)
	}
	ds = append(ds, sparse...)
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].Time.Before(ds[j].Time) })
	for wi, w := range testWindows() {
		for _, f := range append(testFilters, "sparse.example", "*.a.example.com") {
			got := allDeliveries(t, s, Filter{Since: w.Since, Until: w.Until, Domain: f})
			want := selectDs(ds, Window{Since: w.Since, Until: w.Until, Domain: f, IncludeInternal: true})
			if len(got) != len(want) {
				t.Errorf("window %d %q: %d deliveries, want %d", wi, f, len(got), len(want))
				continue
			}
			for i := range got {
				if got[i].Key != want[i].Key {
					t.Errorf("window %d %q: delivery %d is %s, want %s", wi, f, i, got[i].QueueID, want[i].QueueID)
					break
				}
			}
		}
	}
}

func TestDuplicateKeysWithinChunk(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	ds := randomDeliveries(3, 3*insertChunk, t0.Add(-time.Hour), time.Hour)
	ds[insertChunk+9] = ds[insertChunk+2] // same key twice in the second chunk
	ds[insertChunk+9].QueueID = "DUP"
	n, err := s.AddDeliveries(ctx, ds)
	if err != nil || n != len(ds)-1 {
		t.Fatalf("added %d, %v; want %d", n, err, len(ds)-1)
	}
	for _, d := range allDeliveries(t, s, Filter{}) {
		if d.QueueID == "DUP" {
			t.Error("the second occurrence of a key was stored")
		}
	}
	checkRollups(t, s)
	// Half of these are stored already: every chunk is partly skipped.
	more := randomDeliveries(4, 2*insertChunk, t0.Add(-time.Hour), time.Hour)
	var mixed []delivery.Delivery
	for i := range more {
		mixed = append(mixed, more[i], ds[i])
	}
	n, err = s.AddDeliveries(ctx, mixed)
	if err != nil || n != len(more) {
		t.Fatalf("mixed batch added %d, %v; want %d", n, err, len(more))
	}
	checkRollups(t, s)
	// A batch that is not a multiple of insertChunk ends in smaller
	// chunks (here 64, 8, 4 and 1 rows): a key twice within one of them,
	// and one repeating an earlier chunk of the batch.
	odd := randomDeliveries(5, insertChunk+77, t0.Add(-time.Hour), time.Hour)
	odd[insertChunk+40] = odd[insertChunk+3]
	odd[insertChunk+70] = odd[10]
	n, err = s.AddDeliveries(ctx, odd)
	if err != nil || n != len(odd)-2 {
		t.Fatalf("batch of %d added %d, %v; want %d", len(odd), n, err, len(odd)-2)
	}
	checkRollups(t, s)
}

// TestCommitBatchEach: added is called once the batch is committed, for
// exactly the deliveries it added: not for those already stored (also
// when repeated within the batch), nor when the commit fails.
func TestCommitBatchEach(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	ds := randomDeliveries(2, 50, t0.Add(-24*time.Hour), 24*time.Hour)
	seen := map[string]int{}
	count := func(d *delivery.Delivery) { seen[d.Key]++ }
	if n, err := s.CommitBatchEach(ctx, "src", ds[:30], []byte("1"), count); err != nil || n != 30 || len(seen) != 30 {
		t.Fatalf("first batch: added %d, %v; called for %d", n, err, len(seen))
	}
	batch := append(append([]delivery.Delivery{}, ds[20:]...), ds[45])
	if n, err := s.CommitBatchEach(ctx, "src", batch, []byte("2"), count); err != nil || n != 20 {
		t.Fatalf("overlapping batch: added %d, %v", n, err)
	}
	for i, d := range ds {
		if seen[d.Key] != 1 {
			t.Errorf("delivery %d: called %d times, want once", i, seen[d.Key])
		}
	}
	bad := testDelivery(999, t0, "x.example")
	bad.Key = "nothex"
	calls := 0
	if _, err := s.CommitBatchEach(ctx, "src", []delivery.Delivery{testDelivery(998, t0, "y.example"), bad}, []byte("3"), func(*delivery.Delivery) { calls++ }); err == nil || calls != 0 {
		t.Errorf("failed commit: err %v, called %d times", err, calls)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel() // the transaction fails inside, and is rolled back
	if _, err := s.CommitBatchEach(cctx, "src", []delivery.Delivery{testDelivery(997, t0, "z.example")}, []byte("4"), func(*delivery.Delivery) { calls++ }); err == nil || calls != 0 {
		t.Errorf("rolled-back commit: err %v, called %d times", err, calls)
	}
	if got := len(allDeliveries(t, s, Filter{})); got != 50 {
		t.Errorf("%d deliveries stored, want 50", got)
	}
}
