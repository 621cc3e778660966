// Package pgtest gives tests a real, throwaway PostgreSQL: one cluster per
// test binary, made with initdb and started with pg_ctl in a temporary
// directory, listening only on a unix socket inside it, run as an
// unprivileged user when the tests run as root (initdb refuses root), and
// stopped when the tests end (Main). Each test gets a database of its own
// (DSN), so tests stay independent. The cluster trades durability for
// speed: fsync off, small buffers. A test that stops and starts its
// database gets a private cluster (New); the fault suite, not a test,
// starts one with StartCluster.
//
// MAILTLS_TEST_PG=off skips the tests that need PostgreSQL, saying so.
// Otherwise a missing PostgreSQL fails them: CI must not pass by skipping.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Env is the variable that turns the PostgreSQL tests off.
const Env = "MAILTLS_TEST_PG"

// BinEnv names a directory holding initdb and pg_ctl, overriding the search
// of /usr/lib/postgresql/*/bin.
const BinEnv = "MAILTLS_PG_BIN"

const port = 5432 // only names the socket, inside a private directory

// superuser is the cluster's superuser, whom tests connect as.
const superuser = "mailtls"

type cluster struct {
	dir      string // holds data/, the socket and the log
	bin      string
	cred     *syscall.Credential
	settings []string // server settings (-c NAME=VALUE) after the tests' own
}

var (
	once    sync.Once
	running *cluster
	bootErr error
	seq     atomic.Int64
)

// Off reports whether MAILTLS_TEST_PG=off.
func Off() bool { return strings.EqualFold(os.Getenv(Env), "off") }

// Main runs the tests of a package that uses DSN, then stops the cluster
// if one was started. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if running != nil {
		if err := running.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// DSN returns the URL of a new, empty database for t, starting the
// cluster on first use. It skips t when MAILTLS_TEST_PG=off and fails it
// when PostgreSQL cannot be started.
func DSN(t testing.TB) string {
	t.Helper()
	if Off() {
		t.Skipf("%s=off: skipping a test against PostgreSQL", Env)
	}
	once.Do(func() { running, bootErr = start() })
	if bootErr != nil {
		t.Fatalf("PostgreSQL for the tests: %v (install the postgresql package, see .ci/deps, or set %s=off to skip these tests)", bootErr, Env)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), seq.Add(1))
	ctx := context.Background()
	c, err := pgx.Connect(ctx, running.url("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, running.url("postgres"))
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return running.url(name)
}

// SocketDir returns the directory of the running cluster's socket ("" if
// none is running), for tests that need to spell a DSN themselves.
func SocketDir() string {
	if running == nil {
		return ""
	}
	return running.dir
}

// Cluster is a private PostgreSQL cluster (New in a test, StartCluster
// in the fault suite), which its user may stop and start again: for the
// behaviour of mailtls while its database is away. The shared cluster of
// DSN is never stopped by tests.
type Cluster struct{ c *cluster }

// StartCluster starts a private cluster outside a test (bench/cmd/faults);
// Close stops it and removes its files.
func StartCluster() (*Cluster, error) {
	c, err := start()
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL: %w (install the postgresql package, see .ci/deps)", err)
	}
	return &Cluster{c: c}, nil
}

// New starts a private cluster for t, stopped and removed at t's end. Like
// DSN it skips t when MAILTLS_TEST_PG=off and fails it when PostgreSQL
// cannot be started.
func New(t testing.TB) *Cluster {
	t.Helper()
	if Off() {
		t.Skipf("%s=off: skipping a test against PostgreSQL", Env)
	}
	c, err := StartCluster()
	if err != nil {
		t.Fatalf("%v, or set %s=off to skip these tests", err, Env)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return c
}

// Durable is the server configuration of the benchmarks: the tests'
// cluster made crash-safe again (fsync, synchronous commit, full-page
// writes, as a production server runs), with the memory and WAL settings
// of a server sized for its machine rather than for a test.
var Durable = []string{
	"fsync=on", "synchronous_commit=on", "full_page_writes=on",
	"shared_buffers=1GB", "max_wal_size=4GB", "checkpoint_timeout=15min", "wal_compression=lz4",
}

// StartClusterAt starts the cluster kept in dir (which must be an
// absolute path), making it first if dir holds none, with the server
// settings given (NAME=VALUE, after the tests' own: see Durable).
// Shutdown stops it and keeps its files, so that a benchmark reuses a
// filled database; Close removes them.
func StartClusterAt(dir string, settings ...string) (*Cluster, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c, err := open(dir, settings)
	if err != nil {
		return nil, err
	}
	return &Cluster{c: c}, nil
}

// Shutdown stops the server cleanly and keeps its files.
func (c *Cluster) Shutdown() error {
	if out, err := c.c.run("pg_ctl", "-D", filepath.Join(c.c.dir, "data"), "-m", "fast", "-w", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	return nil
}

// DSNFor returns the URL of database db of the cluster.
func (c *Cluster) DSNFor(db string) string { return c.c.url(db) }

// DSN returns the URL of the cluster's database postgres, which its user
// has to itself.
func (c *Cluster) DSN() string { return c.c.url("postgres") }

// SocketDir is the directory of the cluster's unix socket.
func (c *Cluster) SocketDir() string { return c.c.dir }

// Stop stops the server at once (pg_ctl -m immediate): clients see their
// connections cut and new ones refused, as when the server crashes.
func (c *Cluster) Stop() error {
	if out, err := c.c.run("pg_ctl", "-D", filepath.Join(c.c.dir, "data"), "-m", "immediate", "-w", "stop"); err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	return nil
}

// Start starts the server again after Stop, waiting until it accepts
// connections.
func (c *Cluster) Start() error { return c.c.startServer() }

// Close stops the server if it runs and removes the cluster's files.
func (c *Cluster) Close() error { return c.c.stop() }

func (c *cluster) url(db string) string {
	q := url.Values{"host": {c.dir}, "port": {strconv.Itoa(port)}, "sslmode": {"disable"}}
	return "postgres://" + superuser + "@/" + db + "?" + q.Encode()
}

// binDir finds the newest PostgreSQL's programs.
func binDir() (string, error) {
	if d := os.Getenv(BinEnv); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var best string
	bestV := -1
	for _, d := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil && v > bestV {
			best, bestV = d, v
		}
	}
	if best == "" {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", errors.New("no initdb in /usr/lib/postgresql/*/bin nor on PATH")
	}
	return best, nil
}

// credential returns who runs the server: the current user, or when that
// is root, nobody.
func credential() (*syscall.Credential, int, int, error) {
	if os.Getuid() != 0 {
		return nil, os.Getuid(), os.Getgid(), nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("running as root and no user nobody to run PostgreSQL as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid, nil
}

// start makes and starts a throwaway cluster in a new temporary
// directory, with the tests' settings and no fsync even at initdb.
func start() (*cluster, error) {
	dir, err := os.MkdirTemp("", "mailtls-pg-")
	if err != nil {
		return nil, err
	}
	c, err := open(dir, nil, "--no-sync")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

// open starts the cluster kept in dir with the server settings given,
// making it first (initdb with the flags given) if dir holds none, and
// stopping first a server a killed run left running in it.
func open(dir string, settings []string, initdbFlags ...string) (*cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, uid, gid, err := credential()
	if err != nil {
		return nil, err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, bin: bin, cred: cred, settings: settings}
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		_ = os.RemoveAll(data)
		args := append([]string{"-D", data, "-U", superuser, "--auth=trust", "-E", "UTF8", "--locale=C"}, initdbFlags...)
		if out, err := c.run("initdb", args...); err != nil {
			return nil, fmt.Errorf("initdb: %v: %s", err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
		_, _ = c.run("pg_ctl", "-D", data, "-m", "fast", "-w", "stop") // left running by a killed run
	}
	if err := c.startServer(); err != nil {
		return nil, err
	}
	return c, nil
}

// startServer starts the server of an initialised cluster and waits until
// it accepts connections.
func (c *cluster) startServer() error {
	opts := strings.Join([]string{
		"-c listen_addresses=''",
		"-c unix_socket_directories=" + c.dir,
		"-p " + strconv.Itoa(port),
		"-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
		"-c shared_buffers=16MB", "-c max_connections=200",
	}, " ")
	for _, kv := range c.settings {
		opts += " -c " + kv // a later setting wins
	}
	if out, err := c.run("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-l", filepath.Join(c.dir, "log"), "-o", opts, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		return fmt.Errorf("pg_ctl start: %v: %s %s", err, out, log)
	}
	return nil
}

func (c *cluster) run(prog string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.bin, prog), args...)
	cmd.Dir = c.dir
	cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "PG") || strings.HasPrefix(e, "LC_") })
	cmd.Env = append(cmd.Env, "LC_ALL=C")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd.CombinedOutput()
}

func (c *cluster) stop() error {
	if _, err := os.Stat(filepath.Join(c.dir, "data", "postmaster.pid")); errors.Is(err, os.ErrNotExist) {
		return os.RemoveAll(c.dir) // stopped already (Cluster.Stop)
	}
	out, err := c.run("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop")
	rmErr := os.RemoveAll(c.dir)
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	return rmErr
}

// Recreate drops database db of the cluster, if it exists, and creates it
// empty.
func (c *Cluster) Recreate(ctx context.Context, db string) error {
	conn, err := pgx.Connect(ctx, c.DSN())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize())
	return err
}

// Query runs a read-only query in database db of the cluster and returns
// its rows as text, for the benchmarks to check what a store holds
// without a driver of their own.
func (c *Cluster) Query(ctx context.Context, db, query string, args ...any) ([][]string, error) {
	conn, err := pgx.Connect(ctx, c.DSNFor(db))
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		vs, err := rows.Values()
		if err != nil {
			return nil, err
		}
		r := make([]string, len(vs))
		for i, v := range vs {
			r[i] = fmt.Sprint(v)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
