package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// makeV7 writes a database of schema version 7, as mailtls before fleet
// hosts left it: ds stored by a follower of source with checkpoint ck,
// through the statements of version 7 (40-byte keys, no host_id).
func makeV7(t *testing.T, path, source string, ds []delivery.Delivery, ck []byte) {
	t.Helper()
	ctx := context.Background()
	if err := os.WriteFile(path, nil, fileMode); err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector{dsn(path, false, 1000)})
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `PRAGMA journal_mode=WAL`); err != nil {
		t.Fatal(err)
	}
	if err := migrateTo(ctx, db, engSQLite, 7); err != nil {
		t.Fatal(err)
	}
	rows, err := prepare(ds)
	if err != nil {
		t.Fatal(err)
	}
	ru := newRollups()
	ru.countInserted(rows, nil)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // committed below
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, r := range rows {
		d := r.d
		exec(`INSERT INTO deliveries(time, domain, relay, status, tls, tls_trust, tls_protocol, tls_cipher,
			fallback, tls_failure, key, detail, internal, queue_id, recipient, orig_to, dsn, reason, process, pid, host)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', '', '', '', '', '', 0, '')`,
			r.us, r.domain, d.Relay, r.status, r.tlsNull, r.trust, d.TLSProtocol, d.TLSCipher, d.Fallback, d.TLSFailure, r.key, r.detail, d.Internal)
	}
	for id, a := range ru.day {
		table := map[bool]string{false: "rollup_day", true: "rollup_day_internal"}[id.internal]
		exec(`INSERT INTO `+table+`(rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, n, first_time, last_time)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, id.dom.rdomain, id.day, id.tls.status, id.tls.tls, id.tls.trust, id.tls.protocol,
			id.tls.cipher, id.tls.fallback, id.tls.tlsFailure, id.relay.host, id.relay.port, a.n, a.first, a.last)
	}
	for id, n := range ru.hour {
		table := map[bool]string{false: "rollup_hour", true: "rollup_hour_internal"}[id.internal]
		exec(`INSERT INTO `+table+`(hour, status, tls, trust, protocol, cipher, fallback, tls_failure, n) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			id.hour, id.tls.status, id.tls.tls, id.tls.trust, id.tls.protocol, id.tls.cipher, id.tls.fallback, id.tls.tlsFailure, *n)
	}
	exec(`INSERT INTO checkpoints(source, data, updated) VALUES (?, ?, ?)`, source, ck, t0.Unix())
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeFromSchema7 upgrades a database of schema version 7: its
// rows, rollups and checkpoint become the first writer's, so a follower
// restarted on the new version resumes exactly (its checkpoint, nothing
// added again), and another host is a host of its own.
func TestUpgradeFromSchema7(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v7.db")
	const src = "file:/var/log/mail.log"
	var ds []delivery.Delivery
	for i := range 48 {
		d := testDelivery(i, t0.Add(time.Duration(i)*time.Hour+time.Minute), []string{"example.com", "example.net"}[i%2])
		if i%3 == 0 {
			d.TLS = bptr(false)
			d.TLSTrust, d.TLSProtocol, d.TLSCipher = "", "", ""
		}
		d.Internal = i%8 == 7
		ds = append(ds, d)
	}
	makeV7(t, path, src, ds, []byte("ck-v7"))

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.now = func() time.Time { return t0.Add(72 * time.Hour) }
	var version int
	r, _ := s.reader()
	if err := r.QueryRow(`SELECT max(version) FROM schema_migrations`).Scan(&version); err != nil || version != len(migrations) {
		t.Fatalf("schema version after Open: %d, %v; want %d", version, err, len(migrations))
	}
	want, err := s.Summary(ctx, Window{})
	if err != nil {
		t.Fatal(err)
	}
	if want.Deliveries != 42 || want.Internal != 6 || want.Plaintext != 14 {
		t.Fatalf("summary of the upgraded rows: %+v; want 42 sent (14 plaintext) and 6 internal hops", want)
	}
	// Before any writer: the rows are unclaimed host 0's.
	st, err := s.Status(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Hosts) != 1 || st.Hosts[0].Name != UnclaimedHost || st.Hosts[0].Counted != 48 || len(st.Checkpoints) != 1 || st.Checkpoints[0].Host != UnclaimedHost {
		t.Fatalf("status before a writer: hosts %+v, checkpoints %+v; want %s with 48 deliveries and the checkpoint", st.Hosts, st.Checkpoints, UnclaimedHost)
	}

	// The follower restarts on the new version as host mx-old.
	if err := s.SetHost(ctx, "mx-old"); err != nil {
		t.Fatal(err)
	}
	if ck, err := s.Checkpoint(ctx, src); err != nil || string(ck) != "ck-v7" {
		t.Fatalf("checkpoint after the upgrade: %q, %v; want the one stored by version 7", ck, err)
	}
	if n, err := s.CommitBatch(ctx, src, ds, []byte("ck-8")); err != nil || n != 0 {
		t.Fatalf("re-reading the old lines after the upgrade added %d, %v; want 0", n, err)
	}
	if got, err := s.Summary(ctx, Window{}); err != nil || !summariesEqual(got, want) {
		t.Fatalf("summary after re-reading: %+v, %v; want %+v", got, err, want)
	}
	if got, err := s.Summary(ctx, Window{Host: "mx-old"}); err != nil || !summariesEqual(got, want) {
		t.Fatalf("summary of mx-old: %+v, %v; want all of it, %+v", got, err, want)
	}
	if n := len(allDeliveries(t, s, Filter{Host: "mx-old"})); n != 48 {
		t.Errorf("deliveries of mx-old: %d, want 48", n)
	}
	// A later host is a host of its own: the same lines are its deliveries.
	if err := s.SetHost(ctx, "mx-new"); err != nil {
		t.Fatal(err)
	}
	if ck, err := s.Checkpoint(ctx, src); err != nil || ck != nil {
		t.Fatalf("checkpoint of mx-new: %q, %v; want none", ck, err)
	}
	if n, err := s.CommitBatch(ctx, src, ds, []byte("ck-new")); err != nil || n != 48 {
		t.Fatalf("mx-new committing the same lines added %d, %v; want 48", n, err)
	}
	rows, err := s.ReportBy(ctx, Window{}, "host", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Deliveries != 42 || rows[1].Deliveries != 42 || rows[0].Key+" "+rows[1].Key != "mx-new mx-old" {
		t.Errorf("report by host: %+v; want mx-new and mx-old with 42 each", rows)
	}
	if err := s.SetHost(ctx, "mx-old"); err != nil {
		t.Fatal(err)
	}
	if ck, err := s.Checkpoint(ctx, src); err != nil || string(ck) != "ck-8" {
		t.Fatalf("checkpoint of mx-old after mx-new committed: %q, %v; want ck-8", ck, err)
	}
}

func summariesEqual(a, b Summary) bool {
	a.Coverage, b.Coverage = 0, 0
	return a.Deliveries == b.Deliveries && a.Encrypted == b.Encrypted && a.Plaintext == b.Plaintext &&
		a.Internal == b.Internal && a.Domains == b.Domains && a.Deferred == b.Deferred
}

// TestNoHostToWriteAs: a Store whose machine has no valid host name
// writes nothing until SetHost, and says why.
func TestNoHostToWriteAs(t *testing.T) {
	s, _ := openTest(t)
	s.host, s.hostErr = "", errors.New("the machine's host name is not a valid fleet host name; name this host with --host")
	_, err := s.CommitBatch(context.Background(), "file:/x", []delivery.Delivery{testDelivery(1, t0, "example.com")}, nil)
	if err == nil || !strings.Contains(err.Error(), "--host") {
		t.Fatalf("CommitBatch without a host: %v; want an error that asks for --host", err)
	}
	if err := s.SetHost(context.Background(), "mx1"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CommitBatch(context.Background(), "file:/x", []delivery.Delivery{testDelivery(1, t0, "example.com")}, nil); err != nil || n != 1 {
		t.Fatalf("CommitBatch after SetHost: %d, %v", n, err)
	}
}

func TestCheckHost(t *testing.T) {
	for in, want := range map[string]string{"mx1": "mx1", "MX1.Example.NET": "mx1.example.net", " out-2 ": "out-2", "a_b": "a_b"} {
		if got, err := CheckHost(in); err != nil || got != want {
			t.Errorf("CheckHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "a b", "-mx", "mx-", "a..b", ".mx", "mx.", UnclaimedHost, strings.Repeat("a", 64), "mx\n1", "mx/1", "ünï"} {
		if got, err := CheckHost(in); err == nil || !errors.Is(err, ErrBadInput) || strings.Contains(err.Error(), "\n") {
			t.Errorf("CheckHost(%q) = %q, %v; want a one-line ErrBadInput", in, got, err)
		}
	}
}

// FuzzCheckHost: whatever it accepts is a lowercase host name that it
// accepts again unchanged.
func FuzzCheckHost(f *testing.F) {
	for _, s := range []string{"mx1", "MX1.example.net", "a..b", "-x", "(unclaimed)", " mx ", "x_y.z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := CheckHost(s)
		if err != nil {
			if !errors.Is(err, ErrBadInput) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("CheckHost(%q): %v", s, err)
			}
			return
		}
		if h != strings.ToLower(h) || len(h) > 253 || strings.ContainsAny(h, " \t\n()") {
			t.Fatalf("CheckHost(%q) = %q", s, h)
		}
		if again, err := CheckHost(h); err != nil || again != h {
			t.Fatalf("CheckHost(%q) = %q, %v; not stable", h, again, err)
		}
	})
}
