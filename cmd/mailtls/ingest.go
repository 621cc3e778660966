package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/store"
)

// internalRelaysFlag is --internal-relays, for import, follow and run.
func internalRelaysFlag() cli.Flag {
	return &cli.StringFlag{Name: "internal-relays", Usage: "count deliveries to these relays as internal hops, like those to 127.0.0.1, ::1 and unix sockets: " +
		"a comma-separated `LIST` of ADDR, PREFIX (10.0.0.0/8), [ADDR]:PORT, HOST or HOST:PORT"}
}

// internalRelays parses --internal-relays.
func internalRelays(c *cli.Context) (*logparse.InternalRelays, error) {
	r, err := logparse.ParseInternalRelays([]string{c.String("internal-relays")})
	if err != nil {
		return nil, usageErrorf("--internal-relays: %v", strings.TrimPrefix(err.Error(), "logparse: "))
	}
	return r, nil
}

const tlsLoggingHint = "no TLS summary lines found, so TLS of these deliveries is unknown; " +
	"turn TLS logging on with: postconf -e smtp_tls_loglevel=1 && postfix reload"

func importCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "parse mail log files (plain, .gz or - for stdin) into the database",
		ArgsUsage: "FILE...",
		UsageText: "mailtls import /var/log/mail.log.2.gz /var/log/mail.log.1 /var/log/mail.log\n" +
			"journalctl -u postfix@- -o json | mailtls import -\n" +
			"docker compose logs --timestamps postfix | mailtls import -   # kubectl logs too\n\n" +
			"Give rotated files oldest first. Importing the same lines twice adds nothing, so\n" +
			"after an interruption (Ctrl-C) run the same import again to add the rest.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress bar and no summary"},
			internalRelaysFlag(),
			hostFlag(),
			&cli.StringFlag{Name: "config", Usage: "config `FILE` to read internal-relays and host from (default /etc/mailtls/mailtls.conf when present)"},
			postfixUserFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return usageErrorf("import needs at least one FILE (or - for stdin)")
			}
			for _, name := range []string{"internal-relays", "host"} {
				if err := loadConfigSetting(c, name); err != nil {
					return err
				}
			}
			relays, err := internalRelays(c)
			if err != nil {
				return err
			}
			files := c.Args().Slice()
			// Fail early on files that cannot be opened, before writing anything.
			for _, f := range files {
				if f == "-" {
					continue
				}
				if fi, err := os.Stat(f); err != nil {
					return usageErrorf("%v", err)
				} else if fi.IsDir() {
					return usageErrorf("%s is a directory (want a log file)", f)
				}
			}
			// A soft heap limit keeps a bulk import of millions of lines
			// under 100 MB (about 82 MB, with the writer's 8 MiB page
			// cache); within it, collect less often than the default (the
			// live heap is about 12 MB). GOMEMLIMIT and GOGC in the
			// environment win.
			if e.getenv("GOMEMLIMIT") == "" {
				debug.SetMemoryLimit(56 << 20)
			}
			if e.getenv("GOGC") == "" {
				debug.SetGCPercent(400)
			}
			trust, err := journalTrust(c, false)
			if err != nil {
				return err
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			if _, err := setWriteHost(c, st); err != nil {
				return err
			}
			show := !c.Bool("quiet") && isTerminal(e.stderr)
			res, err := importFiles(c.Context, st, files, e.stdin, show, relays, trust, e)
			if errors.Is(err, context.Canceled) {
				return fmt.Errorf("import interrupted after %d lines; %d deliveries are stored; run the same import again to add the rest (deliveries already stored are skipped)", res.lines(), res.committed)
			}
			if err != nil {
				return err
			}
			if !c.Bool("quiet") {
				present := fmt.Sprintf("%d already present", res.stats.Deliveries-int64(res.added)-int64(res.old))
				if res.old > 0 {
					h, _ := st.Horizon(c.Context)
					present += fmt.Sprintf(", %d older than %s, when deliveries were pruned", res.old, h.Format(time.DateOnly))
				}
				first, untrusted := "", ""
				if res.firstSkipped != "" {
					first = ", the first: " + res.firstSkipped
				}
				if n := res.untrusted.Total(); n > 0 {
					untrusted = fmt.Sprintf(", %d journal entries skipped as not from Postfix (%s)", n, res.untrusted)
				}
				fmt.Fprintf(e.stdout, "%d lines read, %d deliveries stored (%s), %d lines skipped as malformed%s%s\n",
					res.lines(), res.added, present, res.stats.Skipped, first, untrusted)
				if res.stats.TLSLines == 0 && res.stats.Deliveries > 0 {
					fmt.Fprintln(e.stderr, "mailtls: note: "+tlsLoggingHint)
				}
				if n := res.untrusted.Count(logparse.JournalBadUID); n > 0 {
					fmt.Fprintf(e.stderr, "mailtls: note: %d smtp/lmtp journal entries came from a _UID other than root's and %s; "+
						"if Postfix runs as another user (here or where the journal was written), give it with --postfix-user NAME|UID\n", n, describeTrust(c, trust))
				}
			}
			return nil
		},
	}
}

type importResult struct {
	stats        logparse.Stats
	firstSkipped string                // Correlator.FirstSkipped, or ""
	untrusted    logparse.JournalSkips // journal entries not fed: see logparse.JournalTrust
	added        int
	committed    int // of added, how many were committed (all, unless interrupted)
	old          int // left out as older than the pruning horizon
}

// lines is the number of lines read, fed to the correlator or not.
func (r importResult) lines() int64 { return r.stats.Lines + r.untrusted.Total() }

// importFiles parses files in order through one correlator (a session may
// span a rotation) and stores deliveries in batches. Parsing (with the
// preparation of each batch for storage) and writing run concurrently, on
// different cores; the writer groups batches into large transactions
// (store.Bulk), so an interrupted import keeps what was committed and a
// rerun adds the rest. Journal entries (journalctl -o json lines) that
// trust does not believe are counted and not fed, as by the journal
// follower.
func importFiles(ctx context.Context, st *store.Store, files []string, stdin io.Reader, progress bool, relays *logparse.InternalRelays, trust logparse.JournalTrust, e env) (importResult, error) {
	var res importResult
	corr := logparse.NewCorrelator(logparse.Options{RefTime: time.Now()})
	batches := make(chan *store.Batch, 1)
	werr := make(chan error, 1)
	var added atomic.Int64
	var committed, old int // set before werr is sent
	go func() {
		bk := st.Bulk()
		var err error
		for b := range batches {
			if err != nil {
				continue // drain, so the parser never blocks
			}
			var n int
			n, err = bk.Add(ctx, b)
			added.Add(int64(n))
		}
		if err == nil {
			err = bk.Commit(ctx)
		}
		err = errors.Join(err, bk.Close())
		committed, old = bk.Committed(), bk.Old()
		werr <- err
	}()
	var total int64
	for _, f := range files {
		if f != "-" {
			if fi, err := os.Stat(f); err == nil {
				total += fi.Size()
			}
		}
	}
	var read atomic.Int64
	stopBar := func() {}
	if progress {
		stopBar = startProgress(e.stderr, &read, total)
	}
	perr := func() error {
		const batchSize = 2500
		batch := make([]delivery.Delivery, 0, batchSize)
		send := func() error {
			if err := ctx.Err(); err != nil {
				return err
			}
			relays.Mark(batch)
			b, err := store.PrepareBatch(batch)
			if err != nil {
				return err
			}
			batches <- b
			batch = make([]delivery.Delivery, 0, batchSize) // b points into the last one
			return nil
		}
		for _, name := range files {
			if err := ctx.Err(); err != nil {
				return err
			}
			r, closeFn, ref, err := openLog(name, stdin)
			if err != nil {
				return err
			}
			corr.SetRefTime(ref)
			lr := logparse.NewLineReader(&countingReader{r: r, n: &read})
			for {
				line, tooLong, err := lr.Next()
				if err == nil {
					if tooLong {
						corr.SkipLine(line)
					} else if v := checkJournalLine(trust, line); v != logparse.JournalBelieved {
						res.untrusted.Add(v)
					} else {
						batch = append(batch, corr.Feed(line)...)
					}
					if len(batch) >= batchSize {
						if err := send(); err != nil {
							closeFn()
							return err
						}
					}
					continue
				}
				closeFn()
				if err == io.EOF {
					break
				}
				return fmt.Errorf("read %s: %w", name, err)
			}
		}
		if len(batch) > 0 {
			return send()
		}
		return nil
	}()
	close(batches)
	err := <-werr
	stopBar()
	res.stats = corr.Stats()
	res.firstSkipped, _ = corr.FirstSkipped()
	res.added = int(added.Load())
	res.committed, res.old = committed, old
	if perr != nil {
		return res, perr
	}
	return res, err
}

// checkJournalLine applies trust to a journalctl -o json line; other lines
// (syslog, postlog) are believed: a file has no journald fields to check.
func checkJournalLine(trust logparse.JournalTrust, line []byte) logparse.JournalVerdict {
	if l := bytes.TrimLeft(line, " \t"); len(l) == 0 || l[0] != '{' {
		return logparse.JournalBelieved
	}
	return trust.Check(line)
}

// openLog opens a plain or gzip-compressed file (detected by its magic
// bytes), or stdin for "-". ref is the time used to infer the year of
// traditional syslog stamps: the file's mtime.
func openLog(name string, stdin io.Reader) (io.Reader, func(), time.Time, error) {
	var (
		r   io.Reader
		c   = func() {}
		ref = time.Now()
	)
	if name == "-" {
		r = stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, nil, ref, err
		}
		if fi, err := f.Stat(); err == nil {
			ref = fi.ModTime()
		}
		r, c = f, func() { f.Close() }
	}
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(2)
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			c()
			return nil, nil, ref, fmt.Errorf("%s: %w", name, err)
		}
		zr.Multistream(true)
		return &gzipTolerant{zr: zr, name: name}, c, ref, nil
	}
	return br, c, ref, nil
}

// gzipTolerant reports a truncated .gz (a rotation caught mid-write) as EOF
// after the last complete data, rather than failing the whole import.
type gzipTolerant struct {
	zr   *gzip.Reader
	name string
}

func (g *gzipTolerant) Read(p []byte) (int, error) {
	n, err := g.zr.Read(p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return n, io.EOF
	}
	return n, err
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// startProgress draws a progress bar on a terminal until stopped.
func startProgress(w io.Writer, read *atomic.Int64, total int64) func() {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
				n := read.Load()
				if total > 0 {
					frac := float64(n) / float64(total)
					if frac > 1 {
						frac = 1
					}
					const width = 30
					full := int(frac * width)
					fmt.Fprintf(w, "\r[%s%s] %3.0f%%  %s", bytes.Repeat([]byte("#"), full), bytes.Repeat([]byte("."), width-full), frac*100, humanBytes(n))
				} else {
					fmt.Fprintf(w, "\r%s read", humanBytes(n))
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
