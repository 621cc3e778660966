package store

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateSnapshot = flag.Bool("update", false, "TestSQLiteSnapshot: write sqlite_schema.sql from the migrations")

// newRawSQLite is a new database file at path on one connection, in WAL
// mode, without a schema.
func newRawSQLite(t *testing.T, path string) *sql.DB {
	t.Helper()
	if err := os.WriteFile(path, nil, fileMode); err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector{dsn(path, false, 1000)})
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`PRAGMA journal_mode=WAL`); err != nil {
		t.Fatal(err)
	}
	return db
}

// dumpSQLite writes what a database holds but its migration records, as
// the statements that make it again: tables, then indexes, views and
// triggers, each group in the order they were made, then the rows of
// every table, in key order.
func dumpSQLite(t *testing.T, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query(`SELECT type, name, sql FROM sqlite_master
		WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name <> 'schema_migrations'
		ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 WHEN 'view' THEN 2 ELSE 3 END, rowid`)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	var tables []string
	for rows.Next() {
		var typ, name, text string
		if err := rows.Scan(&typ, &name, &text); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s;\n\n", text)
		if typ == "table" {
			tables = append(tables, name)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	for _, table := range tables {
		cols := queryStrings(t, db, `SELECT name FROM pragma_table_info(?) ORDER BY cid`, table)
		quoted := make([]string, len(cols))
		for i, c := range cols {
			quoted[i] = "quote(" + quoteIdent(c) + ")"
		}
		for _, vals := range queryStrings(t, db, `SELECT `+strings.Join(quoted, ` || ', ' || `)+` FROM `+quoteIdent(table)+` ORDER BY 1`) {
			fmt.Fprintf(&b, "INSERT INTO %s VALUES (%s);\n", table, vals)
		}
	}
	return b.String()
}

// queryStrings returns the one text column of a query's rows.
func queryStrings(t *testing.T, db *sql.DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.Query(query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// creationOrder lists the types of a database's objects in the order
// they were made, each run of one type once: "table index table view".
func creationOrder(t *testing.T, db *sql.DB) string {
	t.Helper()
	var order sql.NullString
	err := db.QueryRow(`SELECT group_concat(type, ' ') FROM (SELECT type, lag(type) OVER (ORDER BY rowid) AS prev FROM sqlite_master
		WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\_%' ESCAPE '\' AND name <> 'schema_migrations' ORDER BY rowid) WHERE prev IS NULL OR prev <> type`).Scan(&order)
	if err != nil {
		t.Fatal(err)
	}
	return order.String
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// sqliteSequence is what sqlite_sequence holds (the AUTOINCREMENT
// counters, which the dump leaves out: the inserts make them again).
func sqliteSequence(t *testing.T, db *sql.DB) string {
	t.Helper()
	var exists bool
	if err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence')`).Scan(&exists); err != nil || !exists {
		return fmt.Sprint(err)
	}
	var s sql.NullString
	if err := db.QueryRow(`SELECT group_concat(name || '=' || seq, ',') FROM (SELECT * FROM sqlite_sequence ORDER BY name)`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s.String
}

// TestSQLiteSnapshot: a new database made from sqlite_schema.sql holds
// exactly what the migrations make (schema, rows, AUTOINCREMENT
// counters), records every migration as applied, and then upgrades like
// any other; the snapshot is the one the migrations make today.
func TestSQLiteSnapshot(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	migrated := newRawSQLite(t, filepath.Join(dir, "migrated.db"))
	if err := migrateWith(ctx, migrated, engSQLite, len(migrations), false); err != nil {
		t.Fatal(err)
	}
	want := dumpSQLite(t, migrated)
	if *updateSnapshot {
		text := fmt.Sprintf("%s%d\n-- What the migrations make of a new database (store/snapshot.go); written by\n-- `go test ./store -run TestSQLiteSnapshot -update`. Do not edit.\n\n%s", snapshotHeader, len(migrations), want)
		if err := os.WriteFile("sqlite_schema.sql", []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Skip("wrote sqlite_schema.sql; run the test again without -update")
	}
	if v := sqliteSnapshotVersion(); v != len(migrations) {
		t.Fatalf("sqlite_schema.sql is of schema version %d, the migrations end at %d: run `go test ./store -run TestSQLiteSnapshot -update`", v, len(migrations))
	}
	if _, body, _ := strings.Cut(sqliteSnapshot, "\n\n"); body != want {
		t.Fatalf("sqlite_schema.sql differs from what the migrations make: run `go test ./store -run TestSQLiteSnapshot -update`; the migrations make:\n%s", want)
	}

	fresh := newRawSQLite(t, filepath.Join(dir, "snapshot.db"))
	if err := migrate(ctx, fresh, engSQLite); err != nil {
		t.Fatal(err)
	}
	if got := dumpSQLite(t, fresh); got != want {
		t.Errorf("a database made from the snapshot holds:\n%s\nthe migrations make:\n%s", got, want)
	}
	// The snapshot made it: its objects were made in the snapshot's
	// order (tables first), the migrations' in theirs.
	if got, snap := creationOrder(t, fresh), creationOrder(t, migrated); got != "table index view" || got == snap {
		t.Errorf("the new database was not made from the snapshot: objects made in the order %q, want \"table index view\" (the migrations': %q)", got, snap)
	}
	if got, want := sqliteSequence(t, fresh), sqliteSequence(t, migrated); got != want {
		t.Errorf("sqlite_sequence from the snapshot %q, from the migrations %q", got, want)
	}
	var n, lo, hi int
	if err := fresh.QueryRow(`SELECT count(*), min(version), max(version) FROM schema_migrations`).Scan(&n, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if n != len(migrations) || lo != 1 || hi != len(migrations) {
		t.Errorf("schema_migrations after the snapshot: %d rows, versions %d..%d; want 1..%d", n, lo, hi, len(migrations))
	}
	// Applied again, nothing changes.
	if err := migrateTo(ctx, fresh, engSQLite, len(migrations)); err != nil {
		t.Fatal(err)
	}
	if got := dumpSQLite(t, fresh); got != want {
		t.Errorf("a second migrate changed the database")
	}
}

// TestSQLiteSnapshotNotForOlderVersions: a database made to an older
// version (as tests of upgrades do) goes through the migrations, and
// is then upgraded by them to what the snapshot holds.
func TestSQLiteSnapshotNotForOlderVersions(t *testing.T) {
	ctx := context.Background()
	db := newRawSQLite(t, filepath.Join(t.TempDir(), "v7.db"))
	if err := migrateTo(ctx, db, engSQLite, 7); err != nil {
		t.Fatal(err)
	}
	var hosts bool
	if err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'hosts')`).Scan(&hosts); err != nil {
		t.Fatal(err)
	}
	if hosts {
		t.Fatal("a database of version 7 has the hosts table of version 8")
	}
	if err := migrateTo(ctx, db, engSQLite, len(migrations)); err != nil {
		t.Fatal(err)
	}
	if _, body, _ := strings.Cut(sqliteSnapshot, "\n\n"); !strings.Contains(body, "CREATE TABLE hosts") {
		t.Fatal("the snapshot has no hosts table")
	}
}
