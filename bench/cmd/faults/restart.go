package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailtls/mailtls/bench/internal/harness"
)

const restartOverrides = 100_000

type restartResult struct {
	cmd      string
	first    []float64 // ms from exec to the first correct answer
	stop     []float64 // ms from SIGTERM to exit
	failures []string
}

// runRestart times `mailtls run` from exec to its first answered lookup
// with 100,000 overrides in the database.
func runRestart(cfg config) *restartResult {
	logf("restart: setting up %d overrides", restartOverrides)
	dir := filepath.Join(cfg.dir, "restart")
	cfg.mkdirFor(dir)
	db := filepath.Join(dir, "db", "mailtls.db")
	tbl := filepath.Join(dir, "overrides.txt")
	var sb strings.Builder
	for i := 0; i < restartOverrides; i++ {
		fmt.Fprintf(&sb, "r%d.example encrypt\n", i)
	}
	must(os.WriteFile(tbl, []byte(sb.String()), 0o644))
	if _, err := cfg.cli(5*time.Minute, "--db", db, "policy", "import", tbl); err != nil {
		fatalf("restart: %v", err)
	}
	logPath := filepath.Join(dir, "mail.log")
	must(os.WriteFile(logPath, nil, 0o644))
	res := &restartResult{}
	for i := 0; i < 5; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", harness.MustFreePort())
		args := []string{"run", "--db", db, "--log", logPath, "--socketmap", addr, "--tcp", "", "--http", "", "--sources", "override", "--log-level", "warn"}
		res.cmd = shellJoin(append([]string{"mailtls"}, args...)...)
		t0 := time.Now()
		p, err := harness.Start(cfg.logs, "restart-run", cfg.as(append([]string{cfg.bin}, args...)...)...)
		must(err)
		key := fmt.Sprintf("r%d.example", restartOverrides-1)
		if _, err := visible(addr, key, "OK encrypt", 60*time.Second); err != nil {
			res.failures = append(res.failures, err.Error())
			p.Kill()
			continue
		}
		res.first = append(res.first, float64(time.Since(t0).Microseconds())/1000)
		t1 := time.Now()
		if err := p.Stop(15 * time.Second); err != nil {
			res.failures = append(res.failures, "stop: "+err.Error())
		}
		res.stop = append(res.stop, float64(time.Since(t1).Microseconds())/1000)
	}
	logf("restart: first answer after %v ms", res.first)
	return res
}
