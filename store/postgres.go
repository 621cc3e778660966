package store

// The PostgreSQL engine: opening a database named by a DSN, the
// translating connection wrapper, and the engine's own pieces (schema
// lock, change notification). Everything else is shared with SQLite.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// pgMigrateLock is the key of the advisory lock that migrations run
// under, so that hosts starting at once never race ("mtls" in ASCII).
const pgMigrateLock = 0x6d746c73

// Keys of the transaction advisory locks (serialize) that order the
// read-then-write transactions of several hosts, which SQLite's single
// writer orders by itself: override changes (so that the history's old
// values chain up), TLSRPT claims (so that a report is claimed once).
const (
	pgOverridesLock = pgMigrateLock + 1
	pgTLSRPTLock    = pgMigrateLock + 2
	// pgPruneLock is the session advisory lock a Prune holds (lockPrune).
	pgPruneLock = pgMigrateLock + 3
	// pgHorizonLock orders the pruning horizon against the transactions
	// that store deliveries: each holds it shared from the time it reads
	// the horizon (wtx.horizon) to its end, and Prune's change of the
	// horizon holds it exclusively, so that it waits for them and they
	// for it. A transaction thus reads the horizon once, and no delivery
	// before a horizon is stored after it was set.
	pgHorizonLock = pgMigrateLock + 4
)

// serialize makes tx wait for, and then hold until it ends, the advisory
// lock key on PostgreSQL; on SQLite the write transaction is alone anyway.
func (s *Store) serialize(ctx context.Context, tx *sql.Tx, key int64) error {
	if s.eng != engPostgres {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, key); err != nil {
		return fmt.Errorf("store: lock: %w", err)
	}
	return nil
}

// pgNotifyChannel is the channel of the NOTIFY sent (by a trigger on
// meta, see pgNotifySchema) in every transaction that changes overrides.
const pgNotifyChannel = "mailtls_overrides"

// pgNotifySchema makes every bump of the overrides generation (bumpGeneration)
// notify listeners when its transaction commits.
const pgNotifySchema = `
CREATE FUNCTION mailtls_notify_overrides() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_notify('mailtls_overrides', NEW.value::text);
	RETURN NULL;
END
$$;
CREATE TRIGGER meta_notify_overrides AFTER UPDATE ON meta FOR EACH ROW
	WHEN (NEW.name = 'overrides_generation') EXECUTE FUNCTION mailtls_notify_overrides();
`

// pgSchemes are the URL schemes of PostgreSQL DSNs.
var pgSchemes = []string{"postgres", "postgresql"}

// pgKeywords are the libpq connection keywords that make a key=value
// target a PostgreSQL DSN rather than a file name.
var pgKeywords = map[string]bool{
	"host": true, "hostaddr": true, "port": true, "dbname": true, "user": true, "password": true,
	"passfile": true, "sslmode": true, "sslrootcert": true, "sslcert": true, "sslkey": true,
	"connect_timeout": true, "application_name": true, "target_session_attrs": true, "service": true,
}

// dsnRE are the patterns that tell a DSN from a file name (isDSN, which
// every opening of a store asks) and read its scheme; passRE are those
// that redact passwords (RedactDSN, rarely past its shortcut). Each set
// is compiled at its first use, not in every process's start.
var dsnRE = sync.OnceValue(func() (re struct{ scheme, kv *regexp.Regexp }) {
	re.scheme = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*)://`)
	re.kv = regexp.MustCompile(`^\s*([A-Za-z_]+)\s*=`)
	return re
})

var passRE = sync.OnceValue(func() (re struct{ urlPass, qPass, kvPass *regexp.Regexp }) {
	// The password of a URL's userinfo, and password= in a query string
	// or key=value DSN, quoted or not. The userinfo ends at the first '@'
	// before any '/', as libpq reads it, and the password at that '@' (so
	// that p?w@h hides all of p?w).
	re.urlPass = regexp.MustCompile(`(://[^/@:]*:)[^/@]*@`)
	// A password parameter of a URL's query ends at '&'; a key=value one
	// only at a space (or its closing quote), as libpq reads it.
	re.qPass = regexp.MustCompile(`(?i)([?&]password=)[^&#\s]*`)
	re.kvPass = regexp.MustCompile(`(?i)((?:^|[^?&\w])password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)`)
	return re
})

// sslModes are the sslmode values pgx accepts.
var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// isDSN reports whether target names a database server rather than a
// file: any scheme:// URL (so that a mistyped scheme is an error, not a
// file name), or a libpq key=value string.
func isDSN(target string) bool {
	re := dsnRE()
	if re.scheme.MatchString(target) {
		return true
	}
	m := re.kv.FindStringSubmatch(target)
	return m != nil && pgKeywords[strings.ToLower(m[1])]
}

// RedactDSN returns s with any password in it replaced by xxxxx. It is
// meant for DSNs and for error texts that may quote one.
func RedactDSN(s string) string {
	// Every pattern needs an '@' or the word password, whose 'p' has no
	// case-folded form but 'P': most texts (a file name) need no more.
	if !strings.ContainsAny(s, "@pP") {
		return s
	}
	return redactPasswords(s)
}

// redactPasswords is RedactDSN without its shortcut.
func redactPasswords(s string) string {
	re := passRE()
	s = re.urlPass.ReplaceAllString(s, "${1}xxxxx@")
	s = re.qPass.ReplaceAllString(s, "${1}xxxxx")
	return re.kvPass.ReplaceAllString(s, "${1}xxxxx")
}

// parseDSN checks a PostgreSQL DSN and returns pgx's configuration for
// it and its redacted spelling. Errors are one line, name the part that
// is wrong and never hold the password.
func parseDSN(target string) (*pgx.ConnConfig, string, error) {
	red := RedactDSN(target)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: database %q: %s", ErrBadInput, red, strings.ReplaceAll(RedactDSN(fmt.Sprintf(format, args...)), "\n", " "))
	}
	var sslmode, port string
	if m := dsnRE().scheme.FindStringSubmatch(target); m != nil {
		if !slices.Contains(pgSchemes, strings.ToLower(m[1])) {
			return nil, "", bad("unknown scheme %q; accepted: postgres://, postgresql:// (or a file path for SQLite)", m[1])
		}
		ports, q, err := pgURLParts(target[len(m[0]):])
		if err != nil {
			return nil, "", bad("%v", err)
		}
		port = ports
		sslmode = q.Get("sslmode")
		if p := q.Get("port"); p != "" {
			port = p
		}
	} else {
		for _, f := range strings.Fields(target) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				continue
			}
			v = strings.Trim(v, "'")
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "sslmode":
				sslmode = v
			case "port":
				port = v
			}
		}
	}
	if port != "" {
		for _, p := range strings.Split(port, ",") {
			if p == "" {
				continue // a host of a list without a port: the default
			}
			if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
				return nil, "", bad("port %q; accepted: a number from 1 to 65535", p)
			}
		}
	}
	if sslmode != "" && !slices.Contains(sslModes, sslmode) {
		return nil, "", bad("unknown sslmode %q; accepted: %s", sslmode, strings.Join(sslModes, ", "))
	}
	cfg, err := pgx.ParseConfig(target)
	if err != nil {
		msg := err.Error()
		// pgx quotes the (redacted) DSN; the message after it names the part.
		if i := strings.Index(msg, "`: "); i >= 0 {
			msg = msg[i+3:]
		}
		return nil, "", bad("%s", msg)
	}
	return cfg, red, nil
}

// pgURLParts reads the rest of a postgres:// URL after its scheme as
// libpq (and pgx) do, which net/url cannot: a user and password up to the
// first '@' before any '/', then a comma-separated list of hosts, each
// with an optional port (IPv6 addresses in brackets), as in
// postgres://u@db1:5432,[2001:db8::1]:5433/mailtls. It returns the list's
// ports, comma-separated as the port keyword spells them, and the query.
func pgURLParts(rest string) (ports string, q url.Values, err error) {
	if i := strings.IndexFunc(rest, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
		return "", nil, fmt.Errorf("control character %q in the URL", rest[i])
	}
	if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
		rest = rest[i+1:]
	}
	hosts, query := rest, ""
	if i := strings.IndexAny(hosts, "/?"); i >= 0 {
		hosts = rest[:i]
		if j := strings.IndexByte(rest, '?'); j >= 0 {
			query = rest[j+1:]
		}
	}
	if i := strings.IndexByte(query, '#'); i >= 0 {
		query = query[:i]
	}
	var list []string
	if hosts != "" {
		for h := range strings.SplitSeq(hosts, ",") {
			if strings.HasPrefix(h, "[") {
				end := strings.IndexByte(h, ']')
				if end < 0 {
					return "", nil, fmt.Errorf("host %q: no ']' closing the IPv6 address; accepted: [ADDRESS] or [ADDRESS]:PORT", h)
				}
				if end == 1 {
					return "", nil, fmt.Errorf("host %q: empty IPv6 address", h)
				}
				if after := h[end+1:]; after != "" && after[0] != ':' {
					return "", nil, fmt.Errorf("host %q: %q after the IPv6 address; accepted: [ADDRESS]:PORT", h, after)
				}
				h = h[end+1:]
			}
			_, p, _ := strings.Cut(h, ":")
			list = append(list, p)
		}
	}
	if q, err = url.ParseQuery(query); err != nil {
		return "", nil, fmt.Errorf("query string: %v", err)
	}
	return strings.Join(list, ","), q, nil
}

// openPostgres opens the PostgreSQL database named by target and applies
// pending migrations under an advisory lock.
func openPostgres(ctx context.Context, target string) (*Store, error) {
	cfg, red, err := parseDSN(target)
	if err != nil {
		return nil, err
	}
	cfg.DialFunc = pgDial // keepalives and TCP_USER_TIMEOUT: see postgres_dial.go
	s := &Store{path: red, eng: engPostgres, pgcfg: cfg, now: time.Now}
	s.host, s.hostErr = DefaultHost()
	w := sql.OpenDB(pgConnector{stdlib.GetConnector(*cfg)})
	w.SetMaxOpenConns(1) // one writer per process, as with SQLite
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(5 * time.Minute)
	if err := migratePG(ctx, w); err != nil {
		w.Close()
		return nil, s.pgError("open", err)
	}
	r := sql.OpenDB(pgConnector{stdlib.GetConnector(*cfg)})
	r.SetMaxOpenConns(maxReaders)
	r.SetMaxIdleConns(2)
	r.SetConnMaxIdleTime(5 * time.Minute)
	s.h = &handles{w: w, r: r}
	return s, nil
}

// pgError wraps an error of the engine for the caller: redacted, and
// ErrUnavailable when the server could not be reached.
func (s *Store) pgError(what string, err error) error {
	msg := oneLine(RedactDSN(err.Error()))
	if errors.Is(err, ErrSchemaTooNew) {
		return fmt.Errorf("store: %s %s: %w", what, s.path, err)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return fmt.Errorf("%w: %s %s: %s", ErrUnavailable, what, s.path, msg)
	}
	return fmt.Errorf("store: %s %s: %s", what, s.path, msg)
}

// oneLine joins the lines of an engine's error with "; ", each once: pgx
// puts every host of a multi-host DSN, and every attempt at one (TLS,
// then plain with sslmode=prefer), on a line of its own.
func oneLine(msg string) string {
	var seen []string
	var b strings.Builder
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l == "" || slices.Contains(seen, l) {
			continue
		}
		if len(seen) > 0 {
			if strings.HasSuffix(seen[len(seen)-1], ":") {
				b.WriteString(" ")
			} else {
				b.WriteString("; ")
			}
		}
		seen = append(seen, l)
		b.WriteString(l)
	}
	return b.String()
}

// migratePG applies the migrations holding a session advisory lock, on one
// connection: a second process opening the same database waits, then
// finds them applied.
func migratePG(ctx context.Context, db *sql.DB) error {
	c, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, `SELECT pg_advisory_lock(?)`, int64(pgMigrateLock)); err != nil {
		return fmt.Errorf("take the migration lock: %w", err)
	}
	merr := migrate(ctx, c, engPostgres)
	_, uerr := c.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(?)`, int64(pgMigrateLock))
	if merr != nil {
		return merr
	}
	if uerr != nil {
		// Leave the connection out of the pool: it may still hold the lock.
		_ = c.Raw(func(any) error { return driver.ErrBadConn })
		return fmt.Errorf("release the migration lock: %w", uerr)
	}
	return nil
}

// pgConnector hands out pgConns.
type pgConnector struct{ base driver.Connector }

func (c pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	dc, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	sc, ok := dc.(*stdlib.Conn)
	if !ok {
		dc.Close()
		return nil, fmt.Errorf("store: unexpected pgx connection type %T", dc)
	}
	return &pgConn{sc}, nil
}

func (c pgConnector) Driver() driver.Driver { return c.base.Driver() }

// pgConn is a pgx connection that translates every query (pgSQL) and
// binds booleans as integers: the schema, shared with SQLite, has none.
type pgConn struct{ *stdlib.Conn }

func (c *pgConn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

func (c *pgConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	st, err := c.Conn.PrepareContext(ctx, pgSQL(q))
	if err != nil {
		return nil, err
	}
	return pgStmt{st}, nil
}

func (c *pgConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.ExecContext(ctx, pgSQL(q), pgArgs(args))
}

func (c *pgConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.QueryContext(ctx, pgSQL(q), pgArgs(args))
}

func (c *pgConn) CheckNamedValue(nv *driver.NamedValue) error {
	if b, ok := nv.Value.(bool); ok {
		nv.Value = boolInt(b)
	}
	return c.Conn.CheckNamedValue(nv)
}

// pgStmt is a prepared statement of a pgConn (see wtx.exec).
type pgStmt struct{ driver.Stmt }

func (s pgStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	ex, ok := s.Stmt.(driver.StmtExecContext)
	if !ok {
		return nil, errors.New("store: pgx statement cannot execute with a context")
	}
	return ex.ExecContext(ctx, pgArgs(args))
}

func (s pgStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	qc, ok := s.Stmt.(driver.StmtQueryContext)
	if !ok {
		return nil, errors.New("store: pgx statement cannot query with a context")
	}
	return qc.QueryContext(ctx, pgArgs(args))
}

// pgArgs converts booleans to integers, in place.
func pgArgs(args []driver.NamedValue) []driver.NamedValue {
	for i := range args {
		if b, ok := args[i].Value.(bool); ok {
			args[i].Value = boolInt(b)
		}
	}
	return args
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// OverrideChanges returns a channel that receives a value soon after any
// process changes the overrides, for a watcher to reload at once rather
// than at its next poll: on PostgreSQL through LISTEN on a connection of
// its own, reconnecting with backoff when the server is away (and
// signalling after reconnecting, for the changes it may have missed). On
// SQLite it returns nil, a channel that never receives: the watcher polls
// OverridesVersion, which is cheap there. The listener stops with ctx.
func (s *Store) OverrideChanges(ctx context.Context) <-chan struct{} {
	if s.eng != engPostgres {
		return nil
	}
	ch := make(chan struct{}, 1)
	go s.listen(ctx, ch)
	return ch
}

func (s *Store) listen(ctx context.Context, ch chan<- struct{}) {
	signal := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	const first, most = 100 * time.Millisecond, 5 * time.Second
	wait := first
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, s.pgcfg.Copy())
		if err == nil {
			if _, err = conn.Exec(ctx, "LISTEN "+pgNotifyChannel); err == nil {
				wait = first
				signal()
				for {
					if _, err = conn.WaitForNotification(ctx); err != nil {
						break
					}
					signal()
				}
			}
			conn.Close(context.WithoutCancel(ctx))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, most)
	}
}

// lockSourcePG is LockSource on PostgreSQL: a session advisory lock, keyed
// by the hash of host and source, held by a connection of its own until
// release, and taken again on a new one when that connection is lost
// (keepLock).
func (s *Store) lockSourcePG(ctx context.Context, host, source string, key int64) (func(), error) {
	conn, err := pgx.ConnectConfig(ctx, s.pgcfg.Copy())
	if err != nil {
		return nil, fmt.Errorf("store: lock follower of %s as host %s: %s", source, host, RedactDSN(err.Error()))
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("store: lock follower of %s as host %s: %s", source, host, RedactDSN(err.Error()))
	}
	if !got {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("%w as host %s on %s (advisory lock %d held in %s): stop it, or give this one another --host",
			ErrSourceLocked, host, source, key, s.path)
	}
	return s.keepLock(conn, key), nil
}

// lockPrune keeps a second Prune out while one runs: on PostgreSQL, where
// every host of a fleet may prune (--keep), with a session advisory lock
// on a connection of its own, refused at once (ErrPruneRunning) when
// another session holds it. On SQLite it does nothing: the single writer
// orders the deletes, and deleting what is already gone costs nothing.
// If the connection is lost, so is the lock; the deletes stay correct,
// only no longer alone.
func (s *Store) lockPrune(ctx context.Context) (release func(), _ error) {
	if s.eng != engPostgres {
		return func() {}, nil
	}
	conn, err := pgx.ConnectConfig(ctx, s.pgcfg.Copy())
	if err != nil {
		return nil, fmt.Errorf("store: prune: lock %s: %s", s.path, RedactDSN(err.Error()))
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(pgPruneLock)).Scan(&got); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("store: prune: lock %s: %s", s.path, RedactDSN(err.Error()))
	}
	if !got {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("%w (%s, advisory lock %d held): nothing deleted; try again once it has finished", ErrPruneRunning, s.path, int64(pgPruneLock))
	}
	// Unlocked on the session before it is closed: closing alone frees the
	// lock only once the server has ended the backend, which a Prune
	// started right after could beat (TestPostgresPruneAlone failed so).
	return func() {
		bg := context.WithoutCancel(ctx)
		_, _ = conn.Exec(bg, `SELECT pg_advisory_unlock($1)`, int64(pgPruneLock))
		conn.Close(bg)
	}, nil
}

// withPgx runs f on the pgx connection of t's transaction (PostgreSQL),
// for what database/sql cannot say: COPY, and several statements in one
// simple query.
func (t *wtx) withPgx(f func(*pgx.Conn) error) error {
	return t.conn.Raw(func(dc any) error {
		pc, ok := dc.(*pgConn)
		if !ok {
			return errors.New("not a PostgreSQL connection")
		}
		return f(pc.Conn.Conn())
	})
}
