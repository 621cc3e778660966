// Package pgtest gives tests a real, throwaway PostgreSQL: one cluster per
// test binary, made with initdb and started with pg_ctl in a temporary
// directory, listening only on a unix socket inside it, run as an
// unprivileged user when the tests run as root (initdb refuses root), and
// stopped when the tests end (Main). Each test gets a database of its own
// (DSN), so tests stay independent. The cluster trades durability for
// speed: fsync off, small buffers.
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
	dir  string // holds data/, the socket and the log
	bin  string
	cred *syscall.Credential
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

func start() (*cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, uid, gid, err := credential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "mailtls-pg-")
	if err != nil {
		return nil, err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c := &cluster{dir: dir, bin: bin, cred: cred}
	data := filepath.Join(dir, "data")
	if out, err := c.run("initdb", "-D", data, "-U", superuser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	opts := strings.Join([]string{
		"-c listen_addresses=''",
		"-c unix_socket_directories=" + dir,
		"-p " + strconv.Itoa(port),
		"-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
		"-c shared_buffers=16MB", "-c max_connections=200",
	}, " ")
	if out, err := c.run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-o", opts, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_ctl start: %v: %s %s", err, out, log)
	}
	return c, nil
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
	out, err := c.run("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop")
	rmErr := os.RemoveAll(c.dir)
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	return rmErr
}
