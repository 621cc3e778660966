package store

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mailtls/mailtls/delivery"
)

func TestSafeText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"example.com", "example.com"},
		{"bücher.example", "bücher.example"},
		{"a\x00b", "a\uFFFDb"},
		{"a\xffb", "a\uFFFDb"},
		{"a\xff\xfeb", "a\uFFFDb"}, // one per run, as logparse writes
		{"\xc3", "\uFFFD"},         // a truncated sequence
		{"ü\x00\xff", "ü\uFFFD\uFFFD"},
		{"\x00", "\uFFFD"},
		// Past the first 8-byte words (textOK reads words).
		{"0123456789abcdef\x00", "0123456789abcdef\uFFFD"},
		{"0123456789abcde\x00f", "0123456789abcde\uFFFDf"},
		{"01234567\xff", "01234567\uFFFD"},
		{"0123456789abcdefgh-ü-0123456789", "0123456789abcdefgh-ü-0123456789"},
		{"0123456789abcdef0123456789", "0123456789abcdef0123456789"},
	} {
		if got := safeText(c.in); got != c.want {
			t.Errorf("safeText(%q) = %q, want %q", c.in, got, c.want)
		}
		if got := safeText(c.in); !textOK(got) {
			t.Errorf("safeText(%q) = %q, which textOK refuses", c.in, got)
		}
		if textOK(c.in) != (c.in == c.want) {
			t.Errorf("textOK(%q) = %v", c.in, textOK(c.in))
		}
	}
}

func TestReverse(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"example.com", "moc.elpmaxe"},
		{"bücher.example", "elpmaxe.rehcüb"},
		{"例え.jp", "pj.え例"},
		{"a\xffb", "b\uFFFDa"},
		{"a\x00b", "b\uFFFDa"},
	} {
		got := reverse(c.in)
		if got != c.want {
			t.Errorf("reverse(%q) = %q, want %q", c.in, got, c.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("reverse(%q) = %q: not valid UTF-8", c.in, got)
		}
		if back := reverse(got); back != safeText(c.in) {
			t.Errorf("reverse(reverse(%q)) = %q, want %q", c.in, back, safeText(c.in))
		}
	}
	// A subdomain's key starts with its parent's key and a dot: the
	// rollups' range conditions (matcher.rollDomain) rely on it.
	for _, parent := range []string{"example.com", "bücher.example", "例え.jp"} {
		if k, p := reverse("mx.sub."+parent), reverse(parent)+"."; !strings.HasPrefix(k, p) {
			t.Errorf("reverse(mx.sub.%s) = %q, which does not start with %q", parent, k, p)
		}
	}
}

// TestPrepareSanitizes: the rows of a batch hold only safe text, and the
// caller's deliveries are left as they were.
func TestPrepareSanitizes(t *testing.T) {
	d := testDelivery(1, t0, "bü\xffcher.example")
	d.Relay = "mx\x00[192.0.2.1]:25"
	d.Reason = "250 \xc3 ok"
	d.TLSTrust = "trusted\x00"
	ds := []delivery.Delivery{d, testDelivery(2, t0, "example.com")}
	rows, err := prepare(ds)
	if err != nil {
		t.Fatal(err)
	}
	if ds[0].Domain != "bü\xffcher.example" || ds[0].Relay != "mx\x00[192.0.2.1]:25" {
		t.Errorf("prepare changed the caller's delivery: %+v", ds[0])
	}
	r := rows[0]
	for what, v := range map[string]string{"domain": r.domain, "relay": r.d.Relay, "relay host": r.relayH, "trust": r.trust, "detail": r.detail, "reason": r.d.Reason} {
		if !textOK(v) {
			t.Errorf("row %s = %q: not safe text", what, v)
		}
	}
	if r.domain != "bü\uFFFDcher.example" || r.d.Relay != "mx\uFFFD[192.0.2.1]:25" || r.trust != "trusted\uFFFD" {
		t.Errorf("row = domain %q, relay %q, trust %q", r.domain, r.d.Relay, r.trust)
	}
	if rows[1].d != &ds[1] {
		t.Errorf("a safe delivery was copied")
	}
}

// byteReversed is the rollup key of domain as mailtls before schema 10
// wrote it: reversed byte by byte.
func byteReversed(domain string) string {
	b := []byte(domain)
	slices.Reverse(b)
	return string(b)
}

// TestUpgradeRekeysReversed opens a database whose rollup keys are
// spelled as mailtls before schema 10 spelled them (byte by byte, at schema
// version 9): the non-ASCII keys are rewritten, merged where they become
// equal, and reports find those domains again.
func TestUpgradeRekeysReversed(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v8.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return t0.Add(72 * time.Hour) }
	domains := []string{"example.com", "bücher.example", "mx.bücher.example", "例え.jp"}
	var ds []delivery.Delivery
	for i := range 24 {
		ds = append(ds, testDelivery(i, t0.Add(time.Duration(i)*time.Hour), domains[i%len(domains)]))
	}
	if _, err := s.AddDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}
	// What the old mailtls stored: keys reversed byte by byte, and rows
	// of domains with invalid UTF-8 (before safeText), two of which
	// become one domain.
	w, _ := s.writer()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := w.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, d := range domains[1:] {
		exec(`UPDATE rollup_day SET rdomain = ? WHERE rdomain = ?`, byteReversed(d), reverse(d))
	}
	day := t0.Unix()/86400 - 1 // a whole day of the window below
	for i, d := range []string{"a\xffb.example", "a\xfeb.example"} {
		exec(`INSERT INTO rollup_day(rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, n, first_time, last_time, host_id)
			VALUES (?, ?, 'sent', 1, 'trusted', 'TLSv1.3', 'X', 0, 0, 'mx', 25, ?, ?, ?, 0)`, byteReversed(d), day, 2+i, t0.UnixMicro()-86400e6+int64(i), t0.UnixMicro()-86400e6+int64(i))
	}
	exec(`DELETE FROM schema_migrations WHERE version >= 10`) // a database from before migration 10
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.now = func() time.Time { return t0.Add(72 * time.Hour) }
	r, _ := s.reader()
	rows, err := r.QueryContext(ctx, `SELECT rdomain FROM rollup_day`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		if !textOK(k) {
			t.Errorf("rollup key %q after the upgrade: not valid UTF-8", k)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()

	// Whole days (the rollups) and a partial one (raw rows, mailtls_rev)
	// line up: one row per domain, with every delivery.
	win := Window{Since: t0.Truncate(24*time.Hour).AddDate(0, 0, -1), Until: t0.Add(20 * time.Hour)}
	got, err := s.ReportBy(ctx, win, "domain", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"example.com": 5, "bücher.example": 5, "mx.bücher.example": 5, "例え.jp": 5, "a\uFFFDb.example": 5}
	gotm := map[string]int64{}
	for _, row := range got {
		if _, dup := gotm[row.Key]; dup {
			t.Errorf("ReportBy(domain): %q twice", row.Key)
		}
		gotm[row.Key] = row.Deliveries
	}
	for k, n := range want {
		if gotm[k] != n {
			t.Errorf("ReportBy(domain)[%q] = %d, want %d (all: %v)", k, gotm[k], n, gotm)
		}
	}
	if len(gotm) != len(want) {
		t.Errorf("ReportBy(domain) = %v, want %v", gotm, want)
	}
	active, err := s.ActiveDomains(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range domains {
		if !slices.Contains(active, d) {
			t.Errorf("ActiveDomains = %q, missing %q", active, d)
		}
	}
}

// TestCopyHostileText: a SQLite file written before safeText, holding NUL
// bytes and invalid UTF-8 in deliveries, rollups, notes and actors, copies
// into PostgreSQL (which refuses both) with U+FFFD in their place.
func TestCopyHostileText(t *testing.T) {
	ctx := context.Background()
	src, err := Open(ctx, filepath.Join(t.TempDir(), "src.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	src.now = func() time.Time { return t0 }
	ds := []delivery.Delivery{testDelivery(1, t0.Add(-time.Hour), "example.com"), testDelivery(2, t0.Add(-2*time.Hour), "example.com")}
	if _, err := src.AddDeliveries(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if err := src.SetOverride(ctx, Override{Key: "example.com", Policy: "encrypt", Note: "n"}, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Prune(ctx, t0.Add(-10*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// What an older mailtls stored.
	w, _ := src.writer()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := w.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`UPDATE deliveries SET domain = ?, relay = ?, tls_cipher = ?, detail = ? WHERE time = ?`,
		"bad\xff.example", "mx\x00[192.0.2.1]:25", "AES\xfe", `["Q\u0000","u@bad`+"\xff"+`.example","","2.0.0","250 `+"\xc3"+` ok","postfix/smtp",100,"mx"]`,
		t0.Add(-time.Hour).UnixMicro())
	exec(`UPDATE overrides SET note = ?`, "n\xff")
	exec(`UPDATE override_history SET actor = ?, note = ?`, "al\xffice", "n\xff")
	day := t0.Add(-20*24*time.Hour).Unix() / 86400
	exec(`INSERT INTO rollup_day(rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, n, first_time, last_time, host_id)
		VALUES ('moc.elpmaxe', ?, 'sent', 1, 'trusted', 'TLSv1.3', ?, 0, 0, ?, 25, 3, 1, 2, 0)`, day, "X\x00", "mx\xff")

	dst, _ := openPG(t)
	res, err := Copy(ctx, src, dst, CopyOptions{})
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if res.Deliveries != 2 || res.Rollups == 0 {
		t.Errorf("Copy = %+v; want 2 deliveries and the pruned day's rollup", res)
	}
	var got []delivery.Delivery
	if err := dst.Deliveries(ctx, Filter{}, func(d delivery.Delivery) error { got = append(got, d); return nil }); err != nil {
		t.Fatal(err)
	}
	var hostile *delivery.Delivery
	for i := range got {
		if got[i].Time.Equal(t0.Add(-time.Hour)) {
			hostile = &got[i]
		}
	}
	if hostile == nil {
		t.Fatalf("the hostile delivery was not copied: %+v", got)
	}
	if hostile.Domain != "bad\uFFFD.example" || hostile.Relay != "mx\uFFFD[192.0.2.1]:25" || hostile.TLSCipher != "AES\uFFFD" ||
		hostile.QueueID != "Q\uFFFD" || hostile.Recipient != "u@bad\uFFFD.example" || hostile.Reason != "250 \uFFFD ok" {
		t.Errorf("copied delivery = %+v", *hostile)
	}
	ovs, err := dst.Overrides(ctx)
	if err != nil || len(ovs) != 1 || ovs[0].Note != "n\uFFFD" {
		t.Errorf("copied overrides = %+v, %v; want one with note %q", ovs, err, "n\uFFFD")
	}
	hist, err := dst.History(ctx, "")
	if err != nil || len(hist) != 1 || hist[0].Actor != "al\uFFFDice" || hist[0].Note != "n\uFFFD" {
		t.Errorf("copied history = %+v, %v", hist, err)
	}
	rows, err := dst.ReportBy(ctx, Window{Since: t0.Add(-21 * 24 * time.Hour).Truncate(24 * time.Hour), Until: t0.Add(-19 * 24 * time.Hour).Truncate(24 * time.Hour)}, "relay", 0)
	if err != nil || len(rows) != 1 || rows[0].Deliveries != 3 || !strings.HasPrefix(rows[0].Key, "mx\uFFFD") {
		t.Errorf("copied pruned day, by relay: %+v, %v", rows, err)
	}
}

// FuzzSafeText: whatever the input, safeText gives storable text, leaves
// storable text alone, and reverse is its own inverse on it.
func FuzzSafeText(f *testing.F) {
	for _, s := range []string{"", "example.com", "bücher.example", "例え.jp", "a\x00b", "a\xffb", "\xc3", "0123456789abcdef\x00", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := safeText(s)
		if !textOK(got) || !utf8.ValidString(got) || strings.IndexByte(got, 0) >= 0 {
			t.Fatalf("safeText(%q) = %q: not storable", s, got)
		}
		if textOK(s) != (got == s) {
			t.Fatalf("textOK(%q) = %v, safeText gives %q", s, textOK(s), got)
		}
		if safeText(got) != got {
			t.Fatalf("safeText not idempotent on %q", s)
		}
		if r := reverse(s); !textOK(r) || reverse(r) != got {
			t.Fatalf("reverse(%q) = %q, reversed again %q, want %q", s, r, reverse(r), got)
		}
	})
}
