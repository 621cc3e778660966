package store

import (
	"context"
	"errors"
	"fmt"
	"github.com/mailtls/mailtls/delivery"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailtls/mailtls/internal/pgtest"
)

// openPG opens a store on a fresh PostgreSQL database with a fixed clock.
func openPG(t *testing.T) (*Store, string) {
	t.Helper()
	dsn := pgtest.DSN(t)
	s, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.now = func() time.Time { return t0 }
	return s, dsn
}

// TestPostgresConcurrentOpen: hosts starting at once on an empty database
// all succeed, and the schema is set up once (the advisory lock).
func TestPostgresConcurrentOpen(t *testing.T) {
	dsn := pgtest.DSN(t)
	const n = 6
	var wg sync.WaitGroup
	stores := make([]*Store, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(context.Background(), dsn)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d of %d: %v", i+1, n, err)
		}
		defer stores[i].Close()
	}
	r, _ := stores[0].reader()
	var count, max int
	if err := r.QueryRow(`SELECT count(*), max(version) FROM schema_migrations`).Scan(&count, &max); err != nil {
		t.Fatal(err)
	}
	if count != len(migrations) || max != len(migrations) {
		t.Errorf("schema_migrations: %d rows up to version %d; want %d, each once", count, max, len(migrations))
	}
	// Each store writes and sees the others' writes.
	for i, s := range stores {
		if err := s.SetOverride(context.Background(), Override{Key: fmt.Sprintf("h%d.example", i), Policy: "encrypt"}, "host"); err != nil {
			t.Fatal(err)
		}
	}
	ovs, err := stores[n-1].Overrides(context.Background())
	if err != nil || len(ovs) != n {
		t.Errorf("overrides seen by the last store: %d, %v; want %d", len(ovs), err, n)
	}
}

// TestPostgresNotify: a change through one store handle wakes the listener
// of another, and versions differ.
func TestPostgresNotify(t *testing.T) {
	a, dsn := openPG(t)
	b, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := b.OverrideChanges(ctx)
	// The listener signals once connected.
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("listener did not connect within 10s")
	}
	v0, err := b.OverridesVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetOverride(ctx, Override{Key: "example.com", Policy: "encrypt"}, "alice"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification within 10s of a change through another handle")
	}
	if v1, err := b.OverridesVersion(ctx); err != nil || v1 == v0 {
		t.Errorf("version after a change = %d, %v; want other than %d", v1, err, v0)
	}
	if (&Store{}).OverrideChanges(ctx) != nil {
		t.Error("a SQLite store announces changes; want nil (polling)")
	}
}

// TestPostgresUnreachable: a DSN with a password and nothing listening:
// Open fails with ErrUnavailable, and neither the error nor anything else
// holds the password.
func TestPostgresUnreachable(t *testing.T) {
	const pw = "s3cret-Passw0rd"
	dsn := "postgres://mailtls:" + pw + "@127.0.0.1:1/mailtls?sslmode=disable&connect_timeout=5"
	_, err := Open(context.Background(), dsn)
	if err == nil || !errors.Is(err, ErrUnavailable) || strings.Contains(err.Error(), pw) {
		t.Fatalf("Open(unreachable) = %v; want ErrUnavailable without the password", err)
	}
	if !strings.Contains(err.Error(), "postgres://mailtls:xxxxx@127.0.0.1:1/mailtls") {
		t.Errorf("error %q does not name the (redacted) database", err)
	}
	kv := "host=127.0.0.1 port=1 dbname=mailtls user=mailtls password=" + pw + " sslmode=disable connect_timeout=5"
	if _, err := Open(context.Background(), kv); err == nil || strings.Contains(err.Error(), pw) {
		t.Errorf("Open(unreachable key=value DSN) = %v; want an error without the password", err)
	}
}

// TestPostgresPathRedacted: Path and Status show the DSN without its
// password, and Status gives the database's size.
func TestPostgresPathRedacted(t *testing.T) {
	_, dsn := openPG(t)
	s, err := Open(context.Background(), strings.Replace(dsn, "mailtls@", "mailtls:pw-123456@", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if strings.Contains(s.Path(), "pw-123456") || !strings.Contains(s.Path(), "xxxxx") {
		t.Errorf("Path() = %q; want the password redacted", s.Path())
	}
	st, err := s.Status(context.Background(), time.Now())
	if err != nil || strings.Contains(st.Path, "pw-123456") || st.Bytes <= 0 {
		t.Errorf("Status: path %q, %d bytes, %v; want the redacted DSN and the database size", st.Path, st.Bytes, err)
	}
}

// TestPostgresReconnect: when the server drops the connections, the
// listener reconnects (and signals, for what it may have missed), and
// when the database is gone OverridesVersion says ErrUnavailable, so the
// daemon keeps its snapshot.
func TestPostgresReconnect(t *testing.T) {
	a, dsn := openPG(t)
	b, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := b.OverrideChanges(ctx)
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("listener did not connect within 10s")
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := cfg.Database
	cfg.Database = "postgres"
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	kill := func(db string) int {
		t.Helper()
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1`, db).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := kill(db); n < 1 {
		t.Fatalf("terminated %d backends, want the listener's and the pools'", n)
	}
	select {
	case <-ch: // reconnected
	case <-time.After(10 * time.Second):
		t.Fatal("listener did not reconnect within 10s of losing its connection")
	}
	// A change after the reconnection is announced (the pools may need a
	// retry after their connections were killed).
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := a.SetOverride(ctx, Override{Key: "example.com", Policy: "encrypt"}, "alice")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SetOverride after the connections were killed: %v", err)
		}
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification within 10s after the listener reconnected")
	}
	if _, err := b.OverridesVersion(ctx); err != nil {
		t.Fatalf("OverridesVersion with the server up: %v", err)
	}
	// The database goes away.
	if _, err := admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.OverridesVersion(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("OverridesVersion with the database gone = %v; want ErrUnavailable", err)
	}
}

// TestPostgresLeastPrivilege: once the schema exists, a user granted only
// CONNECT, USAGE on the schema and the table privileges (README, "Fleet")
// can run mailtls, bulk COPY included.
func TestPostgresLeastPrivilege(t *testing.T) {
	ctx := context.Background()
	owner, dsn := openPG(t)
	owner.Close()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	role := "app_" + cfg.Database
	db := pgx.Identifier{cfg.Database}.Sanitize()
	for _, q := range []string{
		"CREATE ROLE " + role + " LOGIN",
		"GRANT CONNECT ON DATABASE " + db + " TO " + role,
		"REVOKE CREATE ON SCHEMA public FROM PUBLIC",
		"GRANT USAGE ON SCHEMA public TO " + role,
		"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO " + role,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(ctx, "DROP OWNED BY "+role)
		_, _ = admin.Exec(ctx, "DROP ROLE "+role)
	})
	s, err := Open(ctx, strings.Replace(dsn, "postgres://mailtls@", "postgres://"+role+"@", 1))
	if err != nil {
		t.Fatalf("open as %s: %v", role, err)
	}
	defer s.Close()
	if err := s.SetOverride(ctx, Override{Key: "example.com", Policy: "encrypt"}, "app"); err != nil {
		t.Errorf("SetOverride as %s: %v", role, err)
	}
	ds := randomDeliveries(3, copyMinRows+10, t0.Add(-48*time.Hour), 48*time.Hour)
	if n, err := s.CommitBatch(ctx, "file:/var/log/mail.log", ds, []byte("ck")); err != nil || n != len(ds) {
		t.Errorf("CommitBatch (COPY) as %s: %d, %v; want %d", role, n, err, len(ds))
	}
	if _, err := s.Prune(ctx, t0.Add(-24*time.Hour)); err != nil {
		t.Errorf("Prune as %s: %v", role, err)
	}
}

// TestPostgresConcurrentOverrideChanges: two hosts changing the same
// override at once never fail, and the history chains up: each change's
// old value is the new value of the change before it.
func TestPostgresConcurrentOverrideChanges(t *testing.T) {
	a, dsn := openPG(t)
	b, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for h, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if err := s.SetOverride(ctx, Override{Key: "example.com", Policy: fmt.Sprintf("encrypt protocols=>=TLSv1.%d", 2+(i+h)%2)}, fmt.Sprintf("host%d", h)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("SetOverride: %v", err)
	}
	hist, err := a.History(ctx, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	// History is newest first.
	for i := 0; i+1 < len(hist); i++ {
		if hist[i].Old != hist[i+1].New {
			t.Fatalf("history does not chain: change %d has old %q, the change before it new %q", len(hist)-i, hist[i].Old, hist[i+1].New)
		}
	}
	if len(hist) < 2 || hist[len(hist)-1].Old != "" {
		t.Errorf("history of %d changes, first with old %q; want a creation and changes", len(hist), hist[len(hist)-1].Old)
	}
}

// TestPostgresSchemaTooNew: a database migrated by a newer mailtls is
// refused, as on SQLite.
func TestPostgresSchemaTooNew(t *testing.T) {
	s, dsn := openPG(t)
	w, _ := s.writer()
	if _, err := w.Exec(`INSERT INTO schema_migrations(version, applied) VALUES (?, 0)`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), dsn); !errors.Is(err, ErrSchemaTooNew) {
		t.Errorf("Open of a newer schema = %v; want ErrSchemaTooNew", err)
	}
}

// TestPostgresCopyFallsBack: a batch large enough for the direct COPY
// that repeats keys already stored, or repeats a key within itself, is
// stored the slower way: the stored keys are skipped, the others go in,
// and the counts say so, within one transaction that still commits.
func TestPostgresCopyFallsBack(t *testing.T) {
	s, _ := openPG(t)
	ctx := context.Background()
	t0 := time.Now().UTC()
	ds := randomDeliveries(7, 2*copyMinRows, t0.Add(-48*time.Hour), 48*time.Hour)
	first, second := ds[:copyMinRows], ds[copyMinRows/2:] // overlap: half of first
	if n, err := s.CommitBatch(ctx, "file:/l", first, []byte("1")); err != nil || n != len(first) {
		t.Fatalf("first batch (direct COPY): %d, %v; want %d", n, err, len(first))
	}
	if n, err := s.CommitBatch(ctx, "file:/l", second, []byte("2")); err != nil || n != len(ds)-len(first) {
		t.Fatalf("overlapping batch: %d stored, %v; want %d (the rest skipped as stored)", n, err, len(ds)-len(first))
	}
	dup := append(randomDeliveries(8, copyMinRows, t0.Add(-48*time.Hour), 48*time.Hour), ds[0])
	dup = append(dup, dup[1]) // repeated within the batch
	if n, err := s.CommitBatch(ctx, "file:/l", dup, []byte("3")); err != nil || n != len(dup)-2 {
		t.Fatalf("batch with a repeat: %d stored, %v; want %d", n, err, len(dup)-2)
	}
	ck, err := s.Checkpoint(ctx, "file:/l")
	if err != nil || string(ck) != "3" {
		t.Errorf("checkpoint %q, %v; want the last batch's", ck, err)
	}
	w, _ := s.writer()
	var stored, distinct int64
	if err := w.QueryRow(`SELECT count(*), count(DISTINCT key) FROM deliveries`).Scan(&stored, &distinct); err != nil {
		t.Fatal(err)
	}
	if want := int64(len(ds) + len(dup) - 2); stored != want || distinct != want {
		t.Errorf("stored %d deliveries (%d keys); want %d", stored, distinct, want)
	}
}

// TestPostgresMultiHost: a DSN listing a dead host first (a socket
// directory with no server, or a closed loopback port) and the real
// server second, with target_session_attrs=read-write, opens the store on
// the second and writes to it; the password stays out of Path. The same
// DSN without the real server fails as unreachable, so the first host is
// indeed tried and passed over.
func TestPostgresMultiHost(t *testing.T) {
	ctx := context.Background()
	base, err := url.Parse(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	q := base.Query()
	dir, port := q.Get("host"), q.Get("port")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	const pw = "multi-Pw-0123"
	for _, dead := range []struct{ name, host, port string }{
		{"dead socket dir", t.TempDir(), port},
		{"closed loopback port", "127.0.0.1", closed},
	} {
		t.Run(dead.name, func(t *testing.T) {
			dsn := func(hosts, ports string) string {
				u := *base
				u.User = url.UserPassword(base.User.Username(), pw)
				v := url.Values{"host": {hosts}, "port": {ports}, "sslmode": {"disable"},
					"target_session_attrs": {"read-write"}, "connect_timeout": {"5"}}
				u.RawQuery = v.Encode()
				return u.String()
			}
			s, err := Open(ctx, dsn(dead.host+","+dir, dead.port+","+port))
			if err != nil {
				t.Fatalf("Open(dead host, then the real one): %v", err)
			}
			defer s.Close()
			if err := s.SetOverride(ctx, Override{Key: "multi.example", Policy: "encrypt"}, "alice"); err != nil {
				t.Fatal(err)
			}
			ov, err := s.Overrides(ctx)
			if err != nil || len(ov) != 1 || ov[0].Key != "multi.example" {
				t.Errorf("Overrides = %+v, %v; want multi.example", ov, err)
			}
			if strings.Contains(s.Path(), pw) || !strings.Contains(s.Path(), "xxxxx") {
				t.Errorf("Path() = %q; want the password redacted", s.Path())
			}
			_, err = Open(ctx, dsn(dead.host, dead.port))
			if !errors.Is(err, ErrUnavailable) || strings.Contains(err.Error(), pw) {
				t.Errorf("Open(the dead host alone) = %v; want ErrUnavailable without the password", err)
			}
		})
	}
}

// TestPostgresBulkPrepared: once a Bulk knows the host it writes as, its
// PrepareBatch encodes the COPY data for that host (off the writing
// goroutine); those batches store the same rows, with the same keys, as
// batches encoded when added, for a host other than 0 too.
func TestPostgresBulkPrepared(t *testing.T) {
	withCopy(t)
	ctx := context.Background()
	s, dsn := openPG(t)
	if err := s.SetHost(ctx, "mx1"); err != nil {
		t.Fatal(err)
	}
	ds := randomDeliveries(11, 900, t0.Add(-48*time.Hour), 48*time.Hour)
	// mx1 claims host 0 with a checkpoint and no deliveries, so that the
	// rollups are mx2's alone (checkRollups compares them to all raw rows).
	if _, err := s.CommitBatch(ctx, "/var/log/mail.log", nil, []byte("ck")); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	s2.now = s.now
	if err := s2.SetHost(ctx, "mx2"); err != nil {
		t.Fatal(err)
	}
	bk := s2.Bulk()
	first, err := bk.PrepareBatch(ds[:300])
	if err != nil {
		t.Fatal(err)
	}
	if first.copied != nil {
		t.Fatal("a batch prepared before the Bulk's first Add was encoded: its host is not known yet")
	}
	if n, err := bk.Add(ctx, first); err != nil || n != 300 {
		t.Fatalf("first batch: added %d, %v; want 300", n, err)
	}
	for i, part := range [][]delivery.Delivery{ds[300:600], ds[250:900]} { // the second overlaps the first batch
		b, err := bk.PrepareBatch(part)
		if err != nil {
			t.Fatal(err)
		}
		if b.copied == nil || b.host == 0 {
			t.Fatalf("batch %d prepared after the first Add: encoded %v for host %d; want encoded for mx2's id", i+2, b.copied != nil, b.host)
		}
		want := []int{300, 300}[i]
		if n, err := bk.Add(ctx, b); err != nil || n != want {
			t.Fatalf("batch %d: added %d, %v; want %d", i+2, n, err, want)
		}
	}
	if err := bk.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bk.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(allDeliveries(t, s2, Filter{Host: "mx2"})); n != 900 {
		t.Errorf("deliveries of mx2: %d, want 900", n)
	}
	// Stored with mx2's keys: committing the same deliveries as mx2 adds none.
	if n, err := s2.AddDeliveries(ctx, ds); err != nil || n != 0 {
		t.Errorf("mx2 storing the same deliveries again added %d, %v; want 0", n, err)
	}
	checkRollups(t, s2)
}
