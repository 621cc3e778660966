package store

import (
	_ "embed"
	"strconv"
	"strings"
)

// A new SQLite database is not taken through every migration: it is
// given, in the same transaction, the snapshot of what they make,
// sqlite_schema.sql, which holds the schema and the rows of a new
// database brought to the last version through the migrations. Replaying
// eleven migrations re-parses the schema at every step (each ALTER
// TABLE, and the tables that migration 8 copies, drops and renames) and
// was most of the set-up of a new database, which is most of a small
// import's start.
//
// The migrations stay the definition: TestSQLiteSnapshot fails when the
// snapshot differs from what they make (`go test ./store -run
// TestSQLiteSnapshot -update` writes it again), and a snapshot of another
// version than len(migrations) is not used. PostgreSQL always runs the
// migrations.
//
//go:embed sqlite_schema.sql
var sqliteSnapshot string

// snapshotHeader starts sqliteSnapshot, followed by its schema version.
const snapshotHeader = "-- mailtls SQLite schema version "

// sqliteSnapshotVersion returns the schema version of sqliteSnapshot, or
// 0 if its header is missing.
func sqliteSnapshotVersion() int {
	rest, ok := strings.CutPrefix(sqliteSnapshot, snapshotHeader)
	if !ok {
		return 0
	}
	line, _, _ := strings.Cut(rest, "\n")
	v, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0
	}
	return v
}
