package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// migration is one schema step: SQL, or a function for a step that
// depends on what the database holds (or on the engine). The SQL is
// SQLite's; on PostgreSQL it is translated (pgSQL) unless pg gives the
// step's PostgreSQL text. Both engines number the steps alike, so
// schema_migrations means the same on both.
type migration struct {
	sql string
	pg  string
	fn  func(context.Context, *sql.Tx, engine) error
}

// migrations are applied in order, the pending ones in one transaction,
// and recorded in schema_migrations. Never edit a released migration;
// append a new one, then write the snapshot of new SQLite databases again
// (`go test ./store -run TestSQLiteSnapshot -update`, see snapshot.go).
var migrations = []migration{
	// 1: initial schema; on PostgreSQL with the trigger that notifies
	// override changes.
	{sql: schema1, pg: schema1 + pgNotifySchema},
	// 2: deliveries keep the fields no query filters or groups on in one
	// JSON array (see detail.go), which halves the values bound per row.
	// Rows stored from now on have detail set, and '' (pid 0) in the
	// columns it replaces; rows stored before keep those columns and a
	// NULL detail. Adding a column rewrites nothing, so the upgrade is
	// instant whatever the size of the table. delivery_log shows every row
	// with these fields in columns, for the sqlite3 shell.
	{sql: `
ALTER TABLE deliveries ADD COLUMN detail TEXT;
CREATE VIEW delivery_log AS
SELECT id, time,
	CASE WHEN detail IS NULL THEN queue_id  ELSE json_extract(detail, '$[0]') END AS queue_id,
	CASE WHEN detail IS NULL THEN recipient ELSE json_extract(detail, '$[1]') END AS recipient,
	CASE WHEN detail IS NULL THEN orig_to   ELSE json_extract(detail, '$[2]') END AS orig_to,
	domain, relay, status,
	CASE WHEN detail IS NULL THEN dsn       ELSE json_extract(detail, '$[3]') END AS dsn,
	CASE WHEN detail IS NULL THEN reason    ELSE json_extract(detail, '$[4]') END AS reason,
	tls, tls_trust, tls_protocol, tls_cipher, fallback, tls_failure,
	CASE WHEN detail IS NULL THEN process   ELSE json_extract(detail, '$[5]') END AS process,
	CASE WHEN detail IS NULL THEN pid       ELSE json_extract(detail, '$[6]') END AS pid,
	CASE WHEN detail IS NULL THEN host      ELSE json_extract(detail, '$[7]') END AS host,
	key
FROM deliveries;
`, pg: `ALTER TABLE deliveries ADD COLUMN detail TEXT;` + pgDeliveryLog(false)},
	// 3: see rekeyBadIndex.
	{fn: rekeyBadIndex},
	// 4: see addInternal.
	{fn: addInternal},
	// 5: the cache of what destinations publish, see published.go.
	{sql: publishedSchema},
	// 6: the log of published answers over time, see answerlog.go.
	{sql: answerLogSchema},
	// 7: the TLSRPT reports sent, see tlsrpt.go.
	{sql: tlsrptSchema},
	// 8: fleet hosts on deliveries, checkpoints and rollups, see hosts.go.
	{sql: hostsSchema},
	// 9: refresh claims on the published cache, see claims.go.
	{sql: claimsSchema},
	// 10: rollup keys of non-ASCII domains reversed by character, see
	// rekeyReversed.
	{fn: rekeyReversed},
	// 11: see legacyDefaults.
	{fn: legacyDefaults},
}

// legacyDefaults gives the columns that detail replaced (migration 2) the
// values every row since then has in them, as defaults, on PostgreSQL, so
// that its COPY (pgCopyDeliveries) leaves them out: each field a row sends
// costs the server a receive function call, 8 of 22. Setting a default
// changes only the catalog. SQLite's insert names them with constants.
func legacyDefaults(ctx context.Context, tx *sql.Tx, eng engine) error {
	if eng != engPostgres {
		return nil
	}
	_, err := tx.ExecContext(ctx, `ALTER TABLE deliveries
		ALTER COLUMN queue_id SET DEFAULT '', ALTER COLUMN recipient SET DEFAULT '', ALTER COLUMN orig_to SET DEFAULT '',
		ALTER COLUMN dsn SET DEFAULT '', ALTER COLUMN reason SET DEFAULT '', ALTER COLUMN process SET DEFAULT '',
		ALTER COLUMN pid SET DEFAULT 0, ALTER COLUMN host SET DEFAULT ''`)
	return err
}

// pgDeliveryLog is the PostgreSQL text of the delivery_log view (see
// migration 2), with the columns migration 4 added when v4.
func pgDeliveryLog(v4 bool) string {
	col := func(name string, i int, cast string) string {
		return fmt.Sprintf("\n\tCASE WHEN detail IS NULL THEN %s ELSE (CAST(detail AS json)->>%d)%s END AS %s,", name, i, cast, name)
	}
	q := "\nCREATE VIEW delivery_log AS\nSELECT id, time," + col("queue_id", 0, "") + col("recipient", 1, "") + col("orig_to", 2, "") +
		"\n\tdomain, relay, status," + col("dsn", 3, "") + col("reason", 4, "") +
		"\n\ttls, tls_trust, tls_protocol, tls_cipher, fallback, tls_failure," +
		col("process", 5, "") + col("pid", 6, "::bigint") + col("host", 7, "")
	if v4 {
		q += "\n\tcoalesce(CAST(detail AS json)->>8, '') AS tls_feature,\n\tinternal,"
	}
	return q + "\n\tkey\nFROM deliveries;\n"
}

// schema1 is the first migration.
const schema1 = `
CREATE TABLE meta (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta(name, value) VALUES ('overrides_generation', 0);

CREATE TABLE overrides (
	key     TEXT PRIMARY KEY,
	policy  TEXT NOT NULL,
	note    TEXT NOT NULL DEFAULT '',
	created INTEGER NOT NULL,  -- unix seconds
	updated INTEGER NOT NULL,
	expires INTEGER            -- unix seconds, NULL = never
);

CREATE TABLE override_history (
	id    INTEGER PRIMARY KEY,
	key   TEXT NOT NULL,
	old   TEXT,                -- NULL when the override was created
	new   TEXT,                -- NULL when the override was removed
	actor TEXT NOT NULL,
	at    INTEGER NOT NULL,    -- unix seconds
	note  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX override_history_key ON override_history(key, id);

CREATE TABLE checkpoints (
	source  TEXT PRIMARY KEY,
	data    BLOB NOT NULL,
	updated INTEGER NOT NULL   -- unix seconds
);

CREATE TABLE deliveries (
	id           INTEGER PRIMARY KEY,
	time         INTEGER NOT NULL,  -- unix microseconds, UTC
	queue_id     TEXT NOT NULL,
	recipient    TEXT NOT NULL,
	orig_to      TEXT NOT NULL,
	domain       TEXT NOT NULL,
	relay        TEXT NOT NULL,
	status       TEXT NOT NULL,     -- sent|deferred|bounced|expired
	dsn          TEXT NOT NULL,
	reason       TEXT NOT NULL,
	tls          INTEGER,           -- NULL unknown, 0 plaintext, 1 encrypted
	tls_trust    TEXT NOT NULL,
	tls_protocol TEXT NOT NULL,
	tls_cipher   TEXT NOT NULL,
	fallback     INTEGER NOT NULL,
	tls_failure  INTEGER NOT NULL,
	process      TEXT NOT NULL,
	pid          INTEGER NOT NULL,
	host         TEXT NOT NULL,
	key          BLOB NOT NULL UNIQUE  -- time (8 bytes BE) + sha256 of the log line, see storedKey
);
-- Time order for windows and streaming. domain, status and tls ride along
-- so that scans of a time range filtered by domain (partial report days,
-- --domain listings, "last TLS delivery before") skip non-matching rows
-- without reading the table; there is no deliveries(domain) index, which
-- would cost a third of the insert time.
CREATE INDEX deliveries_time ON deliveries(time, domain, status, tls);
-- Small: only plaintext sent deliveries and TLS failures (downgrade report).
CREATE INDEX deliveries_bad ON deliveries(domain, time)
	WHERE (status = 'sent' AND tls = 0) OR tls_failure = 1;

-- Daily rollup per destination. day = unix day (UTC); rdomain is the
-- recipient domain spelled backwards so that "example.com and its
-- subdomains" is a key range; tls is 0 plaintext, 1 encrypted, 2 unknown;
-- relay_host/relay_port come from relay "host[addr]:port".
-- first_time/last_time answer "when did this domain last/first ..." without
-- an index on deliveries(domain), which would cost a third of the insert
-- time.
-- The primary key starts with rdomain: per-domain queries are key ranges
-- and per-domain aggregation walks the table in order. No index holds n,
-- so adding to an existing row rewrites one b-tree only. rollup_day_day
-- (which also holds the key columns) serves short windows over all
-- domains; rollup_day_relay serves [host]:port queries.
CREATE TABLE rollup_day (
	rdomain     TEXT NOT NULL,
	day         INTEGER NOT NULL,
	status      TEXT NOT NULL,
	tls         INTEGER NOT NULL,
	trust       TEXT NOT NULL,
	protocol    TEXT NOT NULL,
	cipher      TEXT NOT NULL,
	fallback    INTEGER NOT NULL,
	tls_failure INTEGER NOT NULL,
	relay_host  TEXT NOT NULL,
	relay_port  INTEGER NOT NULL,
	n           INTEGER NOT NULL,
	first_time  INTEGER NOT NULL,  -- unix microseconds of the first and last
	last_time   INTEGER NOT NULL,  -- delivery counted in this row
	PRIMARY KEY (rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port)
) WITHOUT ROWID;
CREATE INDEX rollup_day_day ON rollup_day(day);
-- A domain's first encrypted delivery (downgrade report) in one seek.
CREATE INDEX rollup_day_first_enc ON rollup_day(rdomain, first_time) WHERE status = 'sent' AND tls = 1;
CREATE INDEX rollup_day_relay ON rollup_day(relay_host, relay_port, day);

-- Hourly rollup over all destinations. hour = unix hour (UTC).
CREATE TABLE rollup_hour (
	hour        INTEGER NOT NULL,
	status      TEXT NOT NULL,
	tls         INTEGER NOT NULL,
	trust       TEXT NOT NULL,
	protocol    TEXT NOT NULL,
	cipher      TEXT NOT NULL,
	fallback    INTEGER NOT NULL,
	tls_failure INTEGER NOT NULL,
	n           INTEGER NOT NULL,
	PRIMARY KEY (hour, status, tls, trust, protocol, cipher, fallback, tls_failure)
) WITHOUT ROWID;
`

// addInternal records which deliveries are hops inside the host (content
// filters, local LMTP; see logparse.InternalRelays) and Postfix 3.11's tls=
// field (the detail array's optional ninth element, see detail.go). The
// upgrade is instant whatever the size of the table: ADD COLUMN with a
// constant default rewrites no row, and the new tables start empty. Rows
// stored before it count as not internal.
//
// Internal hops get rollups of their own, rollup_day_internal and
// rollup_hour_internal, with the keys of rollup_day and rollup_hour: the
// reports, which leave internal hops out by default, then read the same
// tables through the same indexes as before, and --include-internal adds
// one UNION ALL arm per rollup. (A key column in the old rollups would have
// rewritten them.)
//
// On a database with no deliveries yet (a new one), deliveries_time also
// gets the internal column, so the raw-row parts of the reports (the
// partial days and hours of a window), which now filter on it, stay
// answered from the index alone; upgraded databases keep their index and
// read the column from the table for those rows.
func addInternal(ctx context.Context, tx *sql.Tx, eng engine) error {
	view := `
DROP VIEW delivery_log;
CREATE VIEW delivery_log AS
SELECT id, time,
	CASE WHEN detail IS NULL THEN queue_id  ELSE json_extract(detail, '$[0]') END AS queue_id,
	CASE WHEN detail IS NULL THEN recipient ELSE json_extract(detail, '$[1]') END AS recipient,
	CASE WHEN detail IS NULL THEN orig_to   ELSE json_extract(detail, '$[2]') END AS orig_to,
	domain, relay, status,
	CASE WHEN detail IS NULL THEN dsn       ELSE json_extract(detail, '$[3]') END AS dsn,
	CASE WHEN detail IS NULL THEN reason    ELSE json_extract(detail, '$[4]') END AS reason,
	tls, tls_trust, tls_protocol, tls_cipher, fallback, tls_failure,
	CASE WHEN detail IS NULL THEN process   ELSE json_extract(detail, '$[5]') END AS process,
	CASE WHEN detail IS NULL THEN pid       ELSE json_extract(detail, '$[6]') END AS pid,
	CASE WHEN detail IS NULL THEN host      ELSE json_extract(detail, '$[7]') END AS host,
	coalesce(json_extract(detail, '$[8]'), '') AS tls_feature,
	internal,
	key
FROM deliveries;
`
	if eng == engPostgres {
		view = "\nDROP VIEW delivery_log;" + pgDeliveryLog(true)
	}
	if _, err := tx.ExecContext(ctx, `
ALTER TABLE deliveries ADD COLUMN internal INTEGER NOT NULL DEFAULT 0;
CREATE TABLE rollup_day_internal (
	rdomain     TEXT NOT NULL,
	day         INTEGER NOT NULL,
	status      TEXT NOT NULL,
	tls         INTEGER NOT NULL,
	trust       TEXT NOT NULL,
	protocol    TEXT NOT NULL,
	cipher      TEXT NOT NULL,
	fallback    INTEGER NOT NULL,
	tls_failure INTEGER NOT NULL,
	relay_host  TEXT NOT NULL,
	relay_port  INTEGER NOT NULL,
	n           INTEGER NOT NULL,
	first_time  INTEGER NOT NULL,
	last_time   INTEGER NOT NULL,
	PRIMARY KEY (rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port)
) WITHOUT ROWID;
CREATE INDEX rollup_day_internal_day ON rollup_day_internal(day);
CREATE TABLE rollup_hour_internal (
	hour        INTEGER NOT NULL,
	status      TEXT NOT NULL,
	tls         INTEGER NOT NULL,
	trust       TEXT NOT NULL,
	protocol    TEXT NOT NULL,
	cipher      TEXT NOT NULL,
	fallback    INTEGER NOT NULL,
	tls_failure INTEGER NOT NULL,
	n           INTEGER NOT NULL,
	PRIMARY KEY (hour, status, tls, trust, protocol, cipher, fallback, tls_failure)
) WITHOUT ROWID;
`+view); err != nil {
		return err
	}
	var stored bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM deliveries)`).Scan(&stored); err != nil || stored {
		return err
	}
	_, err := tx.ExecContext(ctx, `DROP INDEX deliveries_time; CREATE INDEX deliveries_time ON deliveries(time, domain, status, tls, internal)`)
	return err
}

// rekeyBadIndex keys deliveries_bad by time first, on a database that holds
// no deliveries yet (a new one): rows then go in at its end, where with the
// (domain, time) key each lands at a random place and, with 32 KiB pages,
// moves half a page (a 1M-line import: 0.065 s of 1.3 s). A database that
// already holds deliveries keeps its (domain, time) index: rebuilding it
// would hold up the upgrade for minutes on a large table, and the 4 KiB
// pages those databases have make random inserts cheap. Downgrades reads
// the index either way; the new one also holds the columns it reads.
func rekeyBadIndex(ctx context.Context, tx *sql.Tx, _ engine) error {
	var stored bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM deliveries)`).Scan(&stored); err != nil || stored {
		return err
	}
	_, err := tx.ExecContext(ctx, `DROP INDEX deliveries_bad; CREATE INDEX deliveries_bad ON deliveries(time, domain, status, tls) WHERE `+badSQL)
	return err
}

// execBeginner is a pool or one connection of it.
type execBeginner interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func createSchemaMigrations(ctx context.Context, w execBeginner, eng engine) error {
	if eng == engPostgres {
		// CREATE TABLE IF NOT EXISTS needs the CREATE privilege even when
		// the table exists, and a database user may have been granted
		// only the tables (README, "Fleet").
		var exists bool
		if err := w.QueryRowContext(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil || exists {
			return err
		}
	}
	_, err := w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version INTEGER PRIMARY KEY,
	applied INTEGER NOT NULL
)`)
	return err
}

func migrate(ctx context.Context, w execBeginner, eng engine) error {
	return migrateTo(ctx, w, eng, len(migrations))
}

// migrateTo applies the pending migrations up to version last (tests make
// databases of older versions with it), all in one transaction: an
// upgrade is applied whole or not at all. A new SQLite database brought
// to the last version gets the snapshot of what the migrations make
// instead (see snapshot.go). The version is read inside the (immediate)
// transaction, so two processes opening a new database at once do not
// both apply them.
func migrateTo(ctx context.Context, w execBeginner, eng engine, last int) error {
	return migrateWith(ctx, w, eng, last, true)
}

// migrateWith is migrateTo, with the snapshot or without it (the
// snapshot's own test).
func migrateWith(ctx context.Context, w execBeginner, eng engine, last int, snapshot bool) error {
	if err := createSchemaMigrations(ctx, w, eng); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	var cur int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
		return errors.Join(fmt.Errorf("read schema version: %w", err), rollback(tx))
	}
	if cur > len(migrations) {
		return errors.Join(fmt.Errorf("%w: database has schema version %d, this binary knows up to %d; upgrade mailtls",
			ErrSchemaTooNew, cur, len(migrations)), rollback(tx))
	}
	if cur >= last {
		return rollback(tx)
	}
	from := cur + 1
	if snapshot && eng == engSQLite && cur == 0 && last == len(migrations) && sqliteSnapshotVersion() == last {
		if _, err := tx.ExecContext(ctx, sqliteSnapshot); err != nil {
			return errors.Join(fmt.Errorf("new database: schema snapshot: %w", err), rollback(tx))
		}
		from = last + 1
	}
	for next := from; next <= last; next++ {
		m := migrations[next-1]
		switch {
		case m.fn != nil:
			err = m.fn(ctx, tx, eng)
		case eng == engPostgres && m.pg != "":
			_, err = tx.ExecContext(ctx, m.pg)
		default:
			_, err = tx.ExecContext(ctx, m.sql)
		}
		if err != nil {
			return errors.Join(fmt.Errorf("migration %d: %w", next, err), rollback(tx))
		}
	}
	now := time.Now().Unix()
	for v := cur + 1; v <= last; v++ {
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied) VALUES (?, ?)`, v, now); err != nil {
			return errors.Join(fmt.Errorf("record migration %d: %w", v, err), rollback(tx))
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit migrations %d to %d: %w", cur+1, last, err)
	}
	return nil
}
