package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailtls/mailtls/bench/internal/harness"
)

// ingestRun is one measurement of one tool on one log.
type ingestRun struct {
	wall   time.Duration
	rssKB  int64
	output string // what the tool says it found
}

type ingestRow struct {
	tool  string
	lines int
	bytes int64
	runs  []ingestRun
}

func (r *ingestRow) medWall() float64 {
	xs := make([]float64, len(r.runs))
	for i, x := range r.runs {
		xs[i] = x.wall.Seconds()
	}
	return harness.Median(xs)
}

func (r *ingestRow) medRSS() float64 {
	xs := make([]float64, len(r.runs))
	for i, x := range r.runs {
		xs[i] = float64(x.rssKB)
	}
	return harness.Median(xs)
}

type ingestResult struct {
	rows        []*ingestRow
	vsPflogsumm map[int][]float64 // lines -> per-run pflogsumm wall / import wall
	versions    map[string]string
	// restRSS is the peak RSS, in KB, of mailtls importing an empty log:
	// the process at rest, most of it the binary's resident code and
	// data, which grows with the binary rather than with the import.
	restRSS []float64
}

var genLineRe = regexp.MustCompile(`^(\d+) lines, (\d+) deliveries`)

// logFile returns the cached gen-log output for n lines, generating it if
// needed, and its real line count.
func logFile(cfg config, n int) (string, int, int64) {
	path := filepath.Join(cfg.dir, fmt.Sprintf("log-%d.log", n))
	meta := path + ".meta"
	if b, err := os.ReadFile(meta); err == nil {
		if fi, err := os.Stat(path); err == nil {
			if m := genLineRe.FindStringSubmatch(string(b)); m != nil {
				lines, _ := strconv.Atoi(m[1])
				return path, lines, fi.Size()
			}
		}
	}
	logf("ingest: generating %d lines", n)
	f, err := os.Create(path)
	if err != nil {
		fatalf("%v", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	r, err := harness.RunTo("", nil, 30*time.Minute, bw, cfg.tool, "gen-log", "--lines", strconv.Itoa(n), "--days", "7", "--seed", "1")
	if err != nil {
		fatalf("gen-log: %v", err)
	}
	if err := bw.Flush(); err != nil {
		fatalf("%v", err)
	}
	if err := f.Close(); err != nil {
		fatalf("%v", err)
	}
	if err := os.WriteFile(meta, r.Stderr, 0o644); err != nil {
		fatalf("%v", err)
	}
	return logFile(cfg, n)
}

func runIngest(_ context.Context, cfg config) *ingestResult {
	res := &ingestResult{vsPflogsumm: map[int][]float64{}, versions: map[string]string{
		"pflogsumm":                   harness.DpkgVersion("pflogsumm"),
		"prometheus-postfix-exporter": harness.DpkgVersion("prometheus-postfix-exporter"),
		"grep":                        harness.DpkgVersion("grep"),
	}}
	dir := filepath.Join(cfg.dir, "ingest")
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fatalf("%v", err)
	}
	empty := filepath.Join(dir, "empty.log")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		fatalf("%v", err)
	}
	for run := 0; run < cfg.runs; run++ {
		db := filepath.Join(dir, "rest.db")
		rmDB(db)
		r, err := harness.Run(time.Minute, false, cfg.bin, "--db", db, "import", empty)
		if err != nil {
			fatalf("import of an empty log: %v", err)
		}
		res.restRSS = append(res.restRSS, float64(r.MaxRSS))
		rmDB(db)
	}
	for _, n := range cfg.logLines {
		path, lines, size := logFile(cfg, n)
		rows := map[string]*ingestRow{}
		for _, t := range []string{"mailtls import", "pflogsumm", "postfix_exporter", "grep -c status="} {
			rows[t] = &ingestRow{tool: t, lines: lines, bytes: size}
			res.rows = append(res.rows, rows[t])
		}
		timeout := 5*time.Minute + time.Duration(n/1000)*time.Second
		for run := 0; run < cfg.runs; run++ {
			// mailtls import into a fresh database.
			db := filepath.Join(dir, "ingest.db")
			for _, s := range []string{"", "-wal", "-shm"} {
				_ = os.Remove(db + s)
			}
			settle()
			r, err := harness.Run(timeout, false, cfg.bin, "--db", db, "import", path)
			if err != nil {
				fatalf("import: %v", err)
			}
			rows["mailtls import"].runs = append(rows["mailtls import"].runs, ingestRun{r.Wall, r.MaxRSS, firstLine(r.Stdout)})
			logf("ingest run %d/%d %d lines: mailtls import %.2fs %d MB", run+1, cfg.runs, lines, r.Wall.Seconds(), r.MaxRSS/1024)
			imp := r.Wall

			settle()
			r, err = harness.Run(timeout*4, false, "pflogsumm", path)
			if err != nil {
				fatalf("pflogsumm: %v", err)
			}
			rows["pflogsumm"].runs = append(rows["pflogsumm"].runs, ingestRun{r.Wall, r.MaxRSS, pflogsummDelivered(r.Stdout)})
			logf("ingest run %d/%d %d lines: pflogsumm %.2fs %d MB", run+1, cfg.runs, lines, r.Wall.Seconds(), r.MaxRSS/1024)
			res.vsPflogsumm[lines] = append(res.vsPflogsumm[lines], r.Wall.Seconds()/imp.Seconds())

			settle()
			er, err := exporterRun(cfg, dir, path, timeout*4)
			if err != nil {
				fatalf("postfix_exporter: %v", err)
			}
			rows["postfix_exporter"].runs = append(rows["postfix_exporter"].runs, er)
			logf("ingest run %d/%d %d lines: postfix_exporter %.2fs %d MB", run+1, cfg.runs, lines, er.wall.Seconds(), er.rssKB/1024)

			settle()
			r, err = harness.Run(timeout, false, "grep", "-c", "status=", path)
			if err != nil {
				fatalf("grep: %v", err)
			}
			rows["grep -c status="].runs = append(rows["grep -c status="].runs, ingestRun{r.Wall, r.MaxRSS, strings.TrimSpace(string(r.Stdout)) + " lines with status="})
		}
		_ = os.Remove(filepath.Join(dir, "ingest.db"))
	}
	return res
}

func firstLine(b []byte) string {
	l, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return l
}

var pflogDelivered = regexp.MustCompile(`(?m)^\s*(\d+[kmKM]?)\s+delivered`)

func pflogsummDelivered(b []byte) string {
	if m := pflogDelivered.FindSubmatch(b); m != nil {
		return string(m[1]) + " delivered"
	}
	return ""
}

const sentinel = "postfix/benchsentinel[1]: end of benchmark input"

var sentinelRe = regexp.MustCompile(`postfix_unsupported_log_entries_total\{service="benchsentinel"\} 1\b`)

// settle writes out every pending disk write before a timed run, so that
// no tool pays for the writes of the one before: the exporter's run
// appends the whole log to a file, and the kernel writing that back slowed
// the next import (which syncs its database) by 0.1-0.2 s in 1.2 s
// (measured).
func settle() { syscall.Sync() }

// exporterRun measures how long postfix_exporter takes to account for
// every line of path. It tails its log from the end (hpcloud/tail, seek to
// end), so it is started on an empty file; the log is then appended,
// followed by a sentinel line of an unknown service, and /metrics is
// polled every 50 ms until the sentinel's counter appears: the exporter
// reads lines in order, so every line before it has been processed.
func exporterRun(cfg config, dir, path string, timeout time.Duration) (ingestRun, error) {
	watched := filepath.Join(dir, "exporter-mail.log")
	if err := os.WriteFile(watched, nil, 0o644); err != nil {
		return ingestRun{}, err
	}
	defer os.Remove(watched)
	port := harness.MustFreePort()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := harness.Start(cfg.logs, "postfix_exporter", "prometheus-postfix-exporter",
		"--web.listen-address="+addr, "--postfix.logfile_path="+watched,
		"--postfix.showq_path="+filepath.Join(dir, "no-showq"))
	if err != nil {
		return ingestRun{}, err
	}
	defer p.Stop(5 * time.Second)
	if err := harness.WaitDial(addr, p, 20*time.Second); err != nil {
		return ingestRun{}, err
	}
	url := "http://" + addr + "/metrics"
	if _, err := scrape(url); err != nil {
		return ingestRun{}, err
	}
	time.Sleep(500 * time.Millisecond) // let the tailer open the file and seek to its end
	src, err := os.Open(path)
	if err != nil {
		return ingestRun{}, err
	}
	defer src.Close()
	dst, err := os.OpenFile(watched, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return ingestRun{}, err
	}
	t0 := time.Now()
	bw := bufio.NewWriterSize(dst, 1<<20)
	if _, err := io.Copy(bw, src); err != nil {
		return ingestRun{}, err
	}
	fmt.Fprintf(bw, "%s mx1 %s\n", time.Now().UTC().Format("2006-01-02T15:04:05.000000-07:00"), sentinel)
	if err := bw.Flush(); err != nil {
		return ingestRun{}, err
	}
	if err := dst.Close(); err != nil {
		return ingestRun{}, err
	}
	deadline := t0.Add(timeout)
	for {
		if p.Exited() {
			return ingestRun{}, fmt.Errorf("exporter exited (see %s)", p.LogPath)
		}
		body, err := scrape(url)
		if err == nil && sentinelRe.MatchString(body) {
			wall := time.Since(t0)
			return ingestRun{wall, harness.ProcStatus(p.Pid(), "VmHWM"), exporterCount(body)}, nil
		}
		if time.Now().After(deadline) {
			return ingestRun{}, fmt.Errorf("%w: sentinel not counted after %s", harness.ErrTimeout, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func scrape(url string) (string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

var smtpStatusRe = regexp.MustCompile(`(?m)^postfix_smtp_tls_connections_total\{[^}]*\} (\d+)`)

// exporterCount sums the exporter's TLS connection counters, its closest
// figure to "deliveries with TLS".
func exporterCount(body string) string {
	var n int64
	for _, m := range smtpStatusRe.FindAllStringSubmatch(body, -1) {
		v, _ := strconv.ParseInt(m[1], 10, 64)
		n += v
	}
	return fmt.Sprintf("%d TLS connections counted", n)
}
