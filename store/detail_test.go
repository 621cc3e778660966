package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

func detailOf(qid, rcpt, orig, dsn, reason, proc string, pid int, host string) delivery.Delivery {
	return delivery.Delivery{QueueID: qid, Recipient: rcpt, OrigTo: orig, DSN: dsn, Reason: reason, Process: proc, PID: pid, LogHost: host}
}

func TestDetailRoundTrip(t *testing.T) {
	for _, d := range []delivery.Delivery{
		{},
		detailOf("4ABC", "u@example.com", "", "2.0.0", "250 2.0.0 Ok: queued as 5DEF", "postfix/smtp", 1234, "mx1"),
		detailOf(`a"b\c`, "tab\there", "nl\nx\r", "\x00\x01\x1f", "caf\xc3\xa9 \xff\xfe invalid UTF-8", "\u2028", -1, "]["),
		detailOf("", "", "", "", strings.Repeat(`\"`, 100), "", 1<<31-1, ""),
		withTLS(detailOf("4ABC", "u@example.com", "", "4.7.5", "Server certificate not verified", "postfix/smtp", 7, "mx1"), "", "num=62:hostname mismatch", ""),
		withTLS(detailOf("4ABC", "u@example.com", "", "2.0.0", "250 ok", "postfix/smtp", 7, "mx1"), "verify", "", "status=success, domain=example.com, receiving_mx=mx[192.0.2.1]"),
		withTLS(detailOf("4ABC", "u@example.com", "", "2.0.0", "250 ok", "postfix/smtp", 7, "mx1"), "dane", "", ""),
	} {
		enc := string(appendDetail(nil, &d))
		var got delivery.Delivery
		if err := decodeDetail(enc, &got); err != nil {
			t.Errorf("decode %q: %v", enc, err)
			continue
		}
		if !reflect.DeepEqual(got, d) {
			t.Errorf("round trip of %q:\n got %#v\nwant %#v", enc, got, d)
		}
	}
}

func withTLS(d delivery.Delivery, feature, verify, rpt string) delivery.Delivery {
	d.TLSFeature, d.TLSVerify, d.TLSRPT = feature, verify, rpt
	return d
}

// TestDetailLengths: the array has 8 elements without the TLS fields, 9
// with only tls_feature, and 11 with tls_verify or tlsrpt; decodeDetail
// reads each.
func TestDetailLengths(t *testing.T) {
	for _, tc := range []struct {
		d    delivery.Delivery
		want string
	}{
		{detailOf("q", "r", "", "d", "x", "p", 1, "h"), `["q","r","","d","x","p",1,"h"]`},
		{withTLS(detailOf("q", "r", "", "d", "x", "p", 1, "h"), "may", "", ""), `["q","r","","d","x","p",1,"h","may"]`},
		{withTLS(detailOf("q", "r", "", "d", "x", "p", 1, "h"), "", "why", ""), `["q","r","","d","x","p",1,"h","","why",""]`},
		{withTLS(detailOf("q", "r", "", "d", "x", "p", 1, "h"), "", "", "rpt"), `["q","r","","d","x","p",1,"h","","","rpt"]`},
	} {
		if got := string(appendDetail(nil, &tc.d)); got != tc.want {
			t.Errorf("appendDetail = %s, want %s", got, tc.want)
		}
		var back delivery.Delivery
		if err := decodeDetail(" "+tc.want, &back); err != nil || !reflect.DeepEqual(back, tc.d) {
			t.Errorf("decodeDetail(%s) through encoding/json = %#v, %v", tc.want, back, err)
		}
	}
	var d delivery.Delivery
	if err := decodeDetail(`["q","r","","d","x","p",1,"h","","","rpt","more"]`, &d); err == nil {
		t.Error("decodeDetail accepted 12 elements")
	}
}

func TestDetailDecodeStandardJSON(t *testing.T) {
	// What another JSON writer (sqlite3's json_array) may produce.
	var d delivery.Delivery
	err := decodeDetail(` [ "q\/1" , "\u00e9\ud83d\ude00" ,"","\b\f","r","p", 42 , "h" ] `, &d)
	want := detailOf("q/1", "é😀", "", "\b\f", "r", "p", 42, "h")
	if err != nil || !reflect.DeepEqual(d, want) {
		t.Errorf("got %#v, %v; want %#v", d, err, want)
	}
	// \u00e9 is é (two bytes in UTF-8), not the byte 0xe9.
	if err := decodeDetail(`["\u00e9","\u001f","","","","",1,""]`, &d); err != nil || d.QueueID != "é" || d.Recipient != "\x1f" {
		t.Errorf(`decode \u00e9 and \u001f: %q, %q, %v`, d.QueueID, d.Recipient, err)
	}
	for _, bad := range []string{
		``, `[]`, `["a","b","c","d","e","f",1]`, `["a","b","c","d","e","f",1,"h",2]`,
		`["a","b","c","d","e","f","1","h"]`, `["a","b","c","d","e","f",1,"h"`, `["a","b","c","d","e","f",1,"h"]x`,
		`["a\x","b","c","d","e","f",1,"h"]`, "[\"a\nb\",\"b\",\"c\",\"d\",\"e\",\"f\",1,\"h\"]",
		`["a","b","c","d","e","f",99999999999,"h"]`, `["\u12","b","c","d","e","f",1,"h"]`,
	} {
		if err := decodeDetail(bad, &d); err == nil {
			t.Errorf("decodeDetail(%q) accepted it", bad)
		}
	}
}

func FuzzDetail(f *testing.F) {
	f.Add("4ABC", "u@example.com", "2.0.0", "250 ok", 1234, `["a","b","c","d","e","f",1,"h"]`)
	f.Add(`"\`, "\x00\xff", "\u2028", "", -5, `["\ud800","","","","","",0,""]`)
	f.Fuzz(func(t *testing.T, qid, rcpt, dsn, reason string, pid int, raw string) {
		pid = int(int32(pid))
		d := detailOf(qid, rcpt, rcpt+qid, dsn, reason, dsn+reason, pid, qid)
		if pid%3 == 1 {
			d = withTLS(d, dsn, reason, qid)
		}
		var got delivery.Delivery
		if err := decodeDetail(string(appendDetail(nil, &d)), &got); err != nil || !reflect.DeepEqual(got, d) {
			t.Fatalf("round trip: got %#v, %v; want %#v", got, err, d)
		}
		_ = decodeDetail(raw, &got) // must not panic
	})
}

// insertV1 is how schema 1 stored a delivery: every field in its column.
const insertV1 = `INSERT INTO deliveries(time, queue_id, recipient, orig_to, domain, relay, status, dsn, reason,
	tls, tls_trust, tls_protocol, tls_cipher, fallback, tls_failure, process, pid, host, key) VALUES
	(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// TestMigrationDetail opens a database written by schema 1, with
// deliveries in its columns, and checks that they read back unchanged next
// to deliveries stored in the detail column, that storing them again adds
// nothing, and that the delivery_log view shows both kinds alike.
func TestMigrationDetail(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	ds := randomDeliveries(21, 400, t0.Add(-48*time.Hour), 48*time.Hour)
	for i := range ds { // every field distinct, so that a mixed-up column shows
		ds[i].OrigTo, ds[i].DSN, ds[i].Reason = fmt.Sprintf("orig%d@x", i), fmt.Sprintf("2.0.%d", i), fmt.Sprintf("250 ok %d", i)
	}
	ds[0].Reason = "caf\xc3\xa9 \"quoted\" \\ \x01"
	old, neu := ds[:250], ds[200:]

	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`PRAGMA journal_mode=WAL`, `CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)`,
		migrations[0].sql, `INSERT INTO schema_migrations VALUES (1, 0)`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := prepare(old)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		d := r.d
		if _, err := db.Exec(insertV1, r.us, d.QueueID, d.Recipient, d.OrigTo, r.domain, d.Relay, r.status, d.DSN, d.Reason,
			r.tlsNull, r.trust, d.TLSProtocol, d.TLSCipher, d.Fallback, d.TLSFailure, d.Process, d.PID, d.LogHost, r.key); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n, err := s.AddDeliveries(ctx, neu)
	if err != nil || n != len(ds)-len(old) {
		t.Fatalf("AddDeliveries after the upgrade: %d, %v; want %d (the 50 already stored by schema 1 skipped)", n, err, len(ds)-len(old))
	}
	r, _ := s.reader()
	var nOld, nNew int
	if err := r.QueryRow(`SELECT count(*) FILTER (WHERE detail IS NULL), count(*) FILTER (WHERE detail IS NOT NULL) FROM deliveries`).Scan(&nOld, &nNew); err != nil {
		t.Fatal(err)
	}
	if nOld != len(old) || nNew != len(ds)-len(old) {
		t.Fatalf("%d rows in columns and %d in detail, want %d and %d", nOld, nNew, len(old), len(ds)-len(old))
	}

	// Schema 3 left the index of a table that held rows as it was.
	if got := badIndexSQL(t, s); !strings.Contains(got, "(domain, time)") {
		t.Errorf("deliveries_bad after upgrading a database with deliveries: %s; want it keyed (domain, time) still", got)
	}
	// Schema 4 too: no index is rebuilt over stored rows.
	var ti string
	if err := r.QueryRow(`SELECT sql FROM sqlite_master WHERE name = 'deliveries_time'`).Scan(&ti); err != nil || strings.Contains(ti, "internal") {
		t.Errorf("deliveries_time after upgrading a database with deliveries: %s, %v; want it as it was", ti, err)
	}

	got := allDeliveries(t, s, Filter{})
	// Rows stored by schema 1 hold neither field (the upgrade rewrites no row).
	for i := range old {
		old[i].Internal, old[i].TLSFeature = false, ""
	}
	want := expectStored(t, ds)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("deliveries after the upgrade differ:\n got %v\nwant %v", got, want)
	}

	// The view: the same fields, whichever way a row is stored.
	vr, err := r.Query(`SELECT queue_id, recipient, orig_to, dsn, reason, process, pid, host FROM delivery_log ORDER BY time, id`)
	if err != nil {
		t.Fatal(err)
	}
	defer vr.Close()
	i := 0
	for ; vr.Next(); i++ {
		var v delivery.Delivery
		if err := vr.Scan(&v.QueueID, &v.Recipient, &v.OrigTo, &v.DSN, &v.Reason, &v.Process, &v.PID, &v.LogHost); err != nil {
			t.Fatal(err)
		}
		w := want[i]
		if v != detailOf(w.QueueID, w.Recipient, w.OrigTo, w.DSN, w.Reason, w.Process, w.PID, w.LogHost) {
			t.Errorf("delivery_log row %d: %#v, want the fields of %#v", i, v, w)
		}
	}
	if err := vr.Err(); err != nil || i != len(want) {
		t.Errorf("delivery_log: %d rows, %v; want %d", i, err, len(want))
	}
}

// expectStored returns ds as Deliveries gives them back: in time order
// (ties in insertion order, which is the order of ds here), times in UTC
// to the microsecond, domain, status and trust lowercased.
func expectStored(t *testing.T, ds []delivery.Delivery) []delivery.Delivery {
	t.Helper()
	out := make([]delivery.Delivery, len(ds))
	host, err := DefaultHost() // what a Store writes as without SetHost
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range ds {
		d.Host = host
		d.Time = d.Time.Truncate(time.Microsecond).UTC()
		d.Domain, d.Status, d.TLSTrust = strings.ToLower(d.Domain), delivery.Status(strings.ToLower(string(d.Status))), delivery.Trust(strings.ToLower(string(d.TLSTrust)))
		out[i] = d
	}
	slices.SortStableFunc(out, func(a, b delivery.Delivery) int { return a.Time.Compare(b.Time) })
	return out
}

func badIndexSQL(t *testing.T, s *Store) string {
	t.Helper()
	r, _ := s.reader()
	var q string
	if err := r.QueryRow(`SELECT sql FROM sqlite_master WHERE name = 'deliveries_bad'`).Scan(&q); err != nil {
		t.Fatal(err)
	}
	return q
}

// TestNewBadIndex checks that a new database gets deliveries_bad keyed by
// time (see rekeyBadIndex), and that SQLite uses it for the downgrade
// queries.
func TestNewBadIndex(t *testing.T) {
	s, _ := openTest(t)
	if got := badIndexSQL(t, s); !strings.Contains(got, "(time, domain, status, tls)") {
		t.Errorf("deliveries_bad of a new database: %s; want it keyed (time, domain, status, tls)", got)
	}
	if _, err := s.Downgrades(context.Background(), Window{}); err != nil {
		t.Fatal(err) // INDEXED BY fails if the index cannot serve the query
	}
}
