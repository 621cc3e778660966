-- mailtls SQLite schema version 11
-- What the migrations make of a new database (store/snapshot.go); written by
-- `go test ./store -run TestSQLiteSnapshot -update`. Do not edit.

CREATE TABLE meta (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;

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
, detail TEXT, internal INTEGER NOT NULL DEFAULT 0, host_id INTEGER NOT NULL DEFAULT 0);

CREATE TABLE published (
	domain  TEXT PRIMARY KEY,
	source  TEXT NOT NULL,     -- dane | mta-sts | none
	policy  TEXT NOT NULL,     -- the Postfix answer; '' with none
	data    BLOB NOT NULL,     -- package published's encoding of the entry
	saved   INTEGER NOT NULL,  -- unix seconds
	expires INTEGER NOT NULL   -- unix seconds: not worth keeping after
) WITHOUT ROWID;

CREATE TABLE answer_log (
	domain    TEXT NOT NULL,
	at        INTEGER NOT NULL,  -- unix microseconds: in force from then on
	source    TEXT NOT NULL,     -- dane | mta-sts | none
	policy    TEXT NOT NULL,     -- the Postfix answer; '' with none
	policy_id TEXT NOT NULL,     -- the MTA-STS policy id, '' without one
	PRIMARY KEY (domain, at)
) WITHOUT ROWID;

CREATE TABLE tlsrpt_sends (
	domain   TEXT NOT NULL,
	day      TEXT NOT NULL,     -- YYYY-MM-DD (UTC)
	rua      TEXT NOT NULL,
	state    TEXT NOT NULL,     -- sending | sent | failed
	attempts INTEGER NOT NULL,
	last_try INTEGER NOT NULL,  -- unix seconds
	error    TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (domain, day, rua)
) WITHOUT ROWID;

CREATE TABLE hosts (
	id   INTEGER PRIMARY KEY,  -- assigned by the store: 0 first, then max + 1
	name TEXT NOT NULL UNIQUE  -- '' while host 0 is unclaimed
);

CREATE TABLE "checkpoints" (
	host_id INTEGER NOT NULL,
	source  TEXT NOT NULL,
	data    BLOB NOT NULL,
	updated INTEGER NOT NULL,  -- unix seconds
	PRIMARY KEY (host_id, source)
);

CREATE TABLE "rollup_day" (
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
	host_id     INTEGER NOT NULL,
	PRIMARY KEY (rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, host_id)
) WITHOUT ROWID;

CREATE TABLE "rollup_day_internal" (
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
	host_id     INTEGER NOT NULL,
	PRIMARY KEY (rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, host_id)
) WITHOUT ROWID;

CREATE TABLE "rollup_hour" (
	hour        INTEGER NOT NULL,
	status      TEXT NOT NULL,
	tls         INTEGER NOT NULL,
	trust       TEXT NOT NULL,
	protocol    TEXT NOT NULL,
	cipher      TEXT NOT NULL,
	fallback    INTEGER NOT NULL,
	tls_failure INTEGER NOT NULL,
	n           INTEGER NOT NULL,
	host_id     INTEGER NOT NULL,
	PRIMARY KEY (hour, status, tls, trust, protocol, cipher, fallback, tls_failure, host_id)
) WITHOUT ROWID;

CREATE TABLE "rollup_hour_internal" (
	hour        INTEGER NOT NULL,
	status      TEXT NOT NULL,
	tls         INTEGER NOT NULL,
	trust       TEXT NOT NULL,
	protocol    TEXT NOT NULL,
	cipher      TEXT NOT NULL,
	fallback    INTEGER NOT NULL,
	tls_failure INTEGER NOT NULL,
	n           INTEGER NOT NULL,
	host_id     INTEGER NOT NULL,
	PRIMARY KEY (hour, status, tls, trust, protocol, cipher, fallback, tls_failure, host_id)
) WITHOUT ROWID;

CREATE TABLE published_claims (
	domain TEXT PRIMARY KEY,
	holder TEXT NOT NULL,     -- who resolves: host name, process and a random part
	until  INTEGER NOT NULL   -- unix microseconds: the claim lapses then
) WITHOUT ROWID;

CREATE INDEX override_history_key ON override_history(key, id);

CREATE INDEX deliveries_bad ON deliveries(time, domain, status, tls) WHERE ((status = 'sent' AND tls = 0) OR tls_failure = 1);

CREATE INDEX deliveries_time ON deliveries(time, domain, status, tls, internal);

CREATE INDEX published_expires ON published(expires);

CREATE INDEX tlsrpt_sends_failed ON tlsrpt_sends(day) WHERE state = 'failed';

CREATE INDEX rollup_day_day ON rollup_day(day);

CREATE INDEX rollup_day_first_enc ON rollup_day(rdomain, first_time) WHERE status = 'sent' AND tls = 1;

CREATE INDEX rollup_day_relay ON rollup_day(relay_host, relay_port, day);

CREATE INDEX rollup_day_internal_day ON rollup_day_internal(day);

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

INSERT INTO meta VALUES ('overrides_generation', 0);
INSERT INTO hosts VALUES (0, '');
