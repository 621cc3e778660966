// Command faults is mailtls's fault suite: it runs the policy daemon and
// the log follower as separate processes, breaks things around them
// (locked, unreadable and replaced databases, abusive clients, SIGKILL,
// log rotation, a full disk, PostgreSQL restarted and stopped) and writes what clients and the database saw
// to RELIABILITY.md. bench/faults.sh (`make faults`) builds and runs it.
//
//	faults -bin bin/mailtls -dir /tmp/mailtls-faults -out RELIABILITY.md [-phases daemon,abuse,follower,restart,fleet,netcut]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailtls/mailtls/bench/internal/harness"
)

type config struct {
	bin, tool, dir, out, logs string
	user                      string // run the daemon and CLI as this user ("" = as is)
	uid, gid                  int
	tmpfs                     bool // mount tmpfs for the disk-full case
	phases                    map[string]bool
	scale                     float64 // multiplies follower line counts
	policySets                int     // `policy set` loop length in the 10,000-changes case
	fcases                    string  // follower cases to run, e.g. "F1,F3"
}

type suite struct {
	cfg      config
	start    time.Time
	notes    []string
	daemon   *daemonResult
	abuse    *abuseResult
	follower *followerResult
	restart  *restartResult
	fleet    *fleetResult
	netcut   *netcutResult
	foreign  string
	failed   []string // correctness checks that failed, set by summary
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func fatalf(format string, args ...any) {
	harness.KillAll()
	fmt.Fprintf(os.Stderr, "faults: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	var cfg config
	var phases string
	flag.StringVar(&cfg.bin, "bin", "bin/mailtls", "mailtls `binary`")
	flag.StringVar(&cfg.tool, "tool", "mailtls-bench", "mailtls-bench `binary` (the log generator)")
	flag.StringVar(&cfg.dir, "dir", "/tmp/mailtls-faults", "work `directory` (emptied first)")
	flag.StringVar(&cfg.out, "out", "RELIABILITY.md", "output `file`")
	flag.StringVar(&cfg.user, "user", "nobody", "run the daemon and the CLI as this `user` (empty: as the caller)")
	flag.BoolVar(&cfg.tmpfs, "tmpfs", true, "mount a small tmpfs for the disk-full case (needs root)")
	flag.StringVar(&phases, "phases", "daemon,abuse,follower,restart,fleet,netcut", "comma-separated `phases` to run")
	flag.Float64Var(&cfg.scale, "scale", 1, "scale the follower's line counts")
	flag.IntVar(&cfg.policySets, "policy-sets", 200, "length of the `policy set` loop")
	flag.StringVar(&cfg.fcases, "follower-cases", "F1,F2,F3,F4,F5,F6", "follower `cases` to run")
	check := flag.Bool("check", false, "exit 1 if a correctness check failed (errors, wrong answers, lost or duplicated deliveries, a daemon that died); timing figures are reported, not checked")
	flag.Parse()
	cfg.phases = map[string]bool{}
	for _, p := range strings.Split(phases, ",") {
		cfg.phases[strings.TrimSpace(p)] = true
	}
	var err error
	if cfg.bin, err = filepath.Abs(cfg.bin); err != nil {
		fatalf("%v", err)
	}
	if cfg.tool, err = filepath.Abs(cfg.tool); err != nil {
		fatalf("%v", err)
	}
	if cfg.dir, err = filepath.Abs(cfg.dir); err != nil {
		fatalf("%v", err)
	}
	harness.Source() // the tree as built, before it can change under a long run
	s := &suite{cfg: cfg, start: time.Now()}
	fw := harness.WatchForeign(5 * time.Second)
	if os.Geteuid() != 0 {
		s.cfg.user = ""
		s.cfg.tmpfs = false
		s.notes = append(s.notes, "Not run as root: the daemon ran as the calling user and the disk-full case was skipped.")
	}
	if s.cfg.user != "" {
		u, err := user.Lookup(s.cfg.user)
		if err != nil {
			fatalf("user %s: %v", s.cfg.user, err)
		}
		s.cfg.uid, _ = strconv.Atoi(u.Uid)
		s.cfg.gid, _ = strconv.Atoi(u.Gid)
	}
	_ = os.RemoveAll(cfg.dir)
	if err := os.MkdirAll(cfg.dir, 0o755); err != nil {
		fatalf("%v", err)
	}
	s.cfg.logs = filepath.Join(cfg.dir, "logs")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		harness.KillAll()
		unmountAll()
		os.Exit(130)
	}()
	defer harness.KillAll()
	defer unmountAll()

	if cfg.phases["daemon"] {
		s.daemon = runDaemon(s.cfg)
	}
	if cfg.phases["abuse"] {
		s.abuse = runAbuse(s.cfg)
	}
	if cfg.phases["follower"] {
		s.follower = runFollower(s.cfg)
	}
	if cfg.phases["restart"] {
		s.restart = runRestart(s.cfg)
	}
	if cfg.phases["fleet"] {
		s.fleet = runFleet(s.cfg)
	}
	if cfg.phases["netcut"] {
		s.netcut = runNetcut(s.cfg)
	}
	s.foreign = fw.Stop()
	if err := os.WriteFile(cfg.out, []byte(s.markdown()), 0o644); err != nil {
		fatalf("%v", err)
	}
	logf("wrote %s (%s)", cfg.out, time.Since(s.start).Round(time.Second))
	if *check && len(s.failed) > 0 {
		fmt.Fprintf(os.Stderr, "faults: %d correctness checks failed (details in %s):\n", len(s.failed), cfg.out)
		for _, f := range s.failed {
			fmt.Fprintf(os.Stderr, "  %s\n", f)
		}
		os.Exit(1)
	}
}

// as prefixes argv so that it runs as cfg.user.
func (cfg config) as(argv ...string) []string {
	if cfg.user == "" {
		return argv
	}
	return append([]string{"setpriv", "--reuid=" + strconv.Itoa(cfg.uid), "--regid=" + strconv.Itoa(cfg.gid), "--clear-groups", "--"}, argv...)
}

// mkdirFor creates dir owned by cfg.user.
func (cfg config) mkdirFor(dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fatalf("%v", err)
	}
	if cfg.user != "" {
		if err := os.Chown(dir, cfg.uid, cfg.gid); err != nil {
			fatalf("%v", err)
		}
	}
}

// cli runs a mailtls command as cfg.user.
func (cfg config) cli(timeout time.Duration, args ...string) (harness.Result, error) {
	return harness.Run(timeout, false, cfg.as(append([]string{cfg.bin}, args...)...)...)
}

var mounts []string

func unmountAll() {
	for _, m := range mounts {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	mounts = nil
}

// shellJoin renders argv for a reader, quoting empty arguments.
func shellJoin(argv ...string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" {
			a = "''"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
