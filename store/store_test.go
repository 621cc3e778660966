package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// openTest opens a store in a temp dir with a fixed clock; under
// TestOnPostgres, a store on a fresh PostgreSQL database (and path is its
// DSN).
func openTest(t *testing.T) (*Store, string) {
	t.Helper()
	if onPostgres(t) {
		return openPG(t)
	}
	path := filepath.Join(t.TempDir(), "db", "mailtls.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.now = func() time.Time { return t0 }
	return s, path
}

func TestOpenModes(t *testing.T) {
	s, path := openTest(t)
	// A write makes sure -wal and -shm exist.
	if err := s.SetOverride(context.Background(), Override{Key: "example.com", Policy: "encrypt"}, "alice"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != dirMode {
		t.Errorf("dir mode %o, want %o", got, dirMode)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != fileMode {
			t.Errorf("%s mode %o, want %o", filepath.Base(p), got, fileMode)
		}
	}
	w, _ := s.writer()
	var mode string
	if err := w.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	var fk, sync, busy int
	if err := w.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys = %d, %v", fk, err)
	}
	if err := w.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil || sync != 1 {
		t.Errorf("synchronous = %d, %v; want 1 (NORMAL)", sync, err)
	}
	r, _ := s.reader()
	if err := r.QueryRow("PRAGMA busy_timeout").Scan(&busy); err != nil || busy != busyTimeoutMS {
		t.Errorf("reader busy_timeout = %d, %v", busy, err)
	}
}

func TestMigrationsIdempotent(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	if err := s.SetOverride(ctx, Override{Key: "example.com", Policy: "encrypt"}, "alice"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for i := 0; i < 2; i++ {
		s2, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("reopen %d: %v", i, err)
		}
		r, _ := s2.reader()
		var n, maxv int
		if err := r.QueryRow("SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &maxv); err != nil {
			t.Fatal(err)
		}
		if n != len(migrations) || maxv != len(migrations) {
			t.Errorf("schema_migrations has %d rows, max %d; want %d", n, maxv, len(migrations))
		}
		ovs, err := s2.Overrides(ctx)
		if err != nil || len(ovs) != 1 {
			t.Errorf("overrides after reopen: %v, %v", ovs, err)
		}
		s2.Close()
	}
}

func TestSchemaTooNew(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	w, _ := s.writer()
	if _, err := w.Exec("INSERT INTO schema_migrations(version, applied) VALUES (?, 0)", len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(ctx, path)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open on newer schema: err = %v, want ErrSchemaTooNew", err)
	}
}

// TestOpenPageSize checks that a new database gets pageSize pages and an
// existing one keeps its own, each with a 32 MiB automatic checkpoint.
func TestOpenPageSize(t *testing.T) {
	ctx := context.Background()
	old := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", "file:"+old)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`PRAGMA page_size = 4096`, `PRAGMA journal_mode = WAL`, `CREATE TABLE t(x)`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, _ := openTest(t)
	o, err := Open(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	for _, c := range []struct {
		name string
		s    *Store
		want int
	}{{"new", s, pageSize}, {"existing", o, 4096}} {
		w, _ := c.s.writer()
		var ps, ckpt int
		if err := w.QueryRow(`PRAGMA page_size`).Scan(&ps); err != nil {
			t.Fatal(err)
		}
		if err := w.QueryRow(`PRAGMA wal_autocheckpoint`).Scan(&ckpt); err != nil {
			t.Fatal(err)
		}
		if ps != c.want || ckpt*ps != walAutocheckpointBytes {
			t.Errorf("%s database: page size %d, automatic checkpoint every %d pages; want %d and %d", c.name, ps, ckpt, c.want, walAutocheckpointBytes/c.want)
		}
	}
}

func TestOpenBadPath(t *testing.T) {
	if _, err := Open(context.Background(), ""); !errors.Is(err, ErrBadInput) {
		t.Errorf("empty path: %v", err)
	}
	// A regular file where the directory should be.
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), filepath.Join(f, "x.db")); err == nil {
		t.Error("Open under a regular file succeeded")
	}
}

func TestActorFromEnv(t *testing.T) {
	t.Setenv("SUDO_USER", "")
	t.Setenv("USER", "")
	// Without $USER, the process's own user, as /etc/passwd names it.
	want := fmt.Sprintf("uid %d", os.Getuid())
	if b, err := os.ReadFile("/etc/passwd"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Split(l, ":"); len(f) > 2 && f[2] == fmt.Sprint(os.Getuid()) {
				want = f[0]
				break
			}
		}
	}
	if got := ActorFromEnv(); got != want {
		t.Errorf("no env: %q, want %q", got, want)
	}
	t.Setenv("USER", "bob")
	if got := ActorFromEnv(); got != "bob" {
		t.Errorf("USER: %q", got)
	}
	t.Setenv("SUDO_USER", "alice")
	if got := ActorFromEnv(); got != "alice" {
		t.Errorf("SUDO_USER: %q", got)
	}
}

// After Close the WAL is empty, so deleting the database file alone can
// not leave frames that a new database at the same path would replay.
func TestCloseLeavesEmptyWAL(t *testing.T) {
	ctx := context.Background()
	s, path := openTest(t)
	if err := s.SetOverride(ctx, Override{Key: "example.com", Policy: "encrypt"}, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Overrides(ctx); err != nil { // leave a reader connection open too
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	fi, err := os.Stat(path + "-wal")
	if err == nil && fi.Size() != 0 {
		t.Errorf("-wal has %d bytes after Close", fi.Size())
	}
	if _, err := s.Overrides(ctx); err == nil {
		t.Error("Overrides after Close succeeded")
	}
}

// TestOpenConcurrentNew opens a database that does not exist yet from
// several stores at once, as `mailtls run` and a `mailtls status` started
// beside it do: every open succeeds (the setup of a new database takes
// locks that SQLite's busy handler does not wait for).
func TestOpenConcurrentNew(t *testing.T) {
	ctx := context.Background()
	for round := 0; round < 20; round++ {
		path := filepath.Join(t.TempDir(), "mailtls.db")
		errs := make(chan error, 4)
		for range 4 {
			go func() {
				s, err := Open(ctx, path)
				if err == nil {
					_, err = s.Overrides(ctx)
					err = errors.Join(err, s.Close())
				}
				errs <- err
			}()
		}
		for range 4 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}
