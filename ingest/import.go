// Package ingest is the pipeline from mail logs to the store: Import reads
// log files once (mailtls import), a Follower follows the live log
// (mailtls follow and run). Both parse with logparse's one line reader
// and correlator, apply the same journal trust and internal-relay rules,
// and write through small storage interfaces (seams.go), so that commands
// only turn flags into options and print.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/store"
)

// TLSLoggingHint is said when deliveries come without TLS summary lines.
const TLSLoggingHint = "no TLS summary lines found, so TLS of these deliveries is unknown; " +
	"turn TLS logging on with: postconf -e smtp_tls_loglevel=1 && postfix reload"

// ImportOptions are the settings of an Import.
type ImportOptions struct {
	// Stdin is read for the file name "-".
	Stdin io.Reader
	// Progress, if not nil, is where a progress bar is drawn (a terminal)
	// while the files are read; it is erased at the end.
	Progress io.Writer
	// Relays marks the deliveries to internal hops; nil applies only the
	// built-in rule (loopback addresses and unix sockets).
	Relays *logparse.InternalRelays
	// Trust gives the rule that decides which journal entries (journalctl
	// -o json lines) are believed; the others are counted in
	// Result.Untrusted and not fed. It is called at the first journal
	// entry, if any, so that an import of syslog files never looks up the
	// Postfix user (see PostfixTrust); its error ends the import. Nil
	// believes root alone.
	Trust func() (logparse.JournalTrust, error)
}

// Result is what an Import read and stored, also when it failed or was
// interrupted.
type Result struct {
	Stats        logparse.Stats
	FirstSkipped string                // Correlator.FirstSkipped, or ""
	Untrusted    logparse.JournalSkips // journal entries not fed: see logparse.JournalTrust
	Trust        logparse.JournalTrust // the rule they were judged by (opts.Trust's); zero if none came
	Added        int
	Committed    int // of Added, how many were committed (all, unless interrupted)
	Old          int // left out as older than the pruning horizon
}

// Lines is the number of lines read, fed to the correlator or not.
func (r Result) Lines() int64 { return r.Stats.Lines + r.Untrusted.Total() }

// importBatch is the number of deliveries prepared for storage at once.
const importBatch = 2500

// Import parses files in order through one correlator (a session may span
// a rotation) and stores deliveries in batches through bk, which it
// commits and closes. Each file is plain or gzip-compressed (detected by
// its magic bytes; a truncated .gz ends at its last complete data), or "-"
// for opts.Stdin. Parsing, the preparation of each batch for storage (see
// preparer) and writing run concurrently, each on a goroutine of its own;
// bk groups batches into
// large transactions, so an interrupted import keeps what was committed
// and a rerun adds the rest. Journal entries that opts.Trust does not
// believe are counted and not fed, as by the journal follower.
func Import(ctx context.Context, bk Bulk, files []string, opts ImportOptions) (Result, error) {
	opts.Relays = orBuiltIn(opts.Relays)
	var res Result
	w := startWriter(ctx, bk)
	pr := startPreparer(opts.Relays, bk.PrepareBatch, w.batches)
	p := &parser{ctx: ctx, opts: opts, out: pr.in, free: pr.free, failed: &pr.failed, untrusted: &res.Untrusted, trust: &res.Trust,
		corr: logparse.NewCorrelator(logparse.Options{RefTime: time.Now()})}
	stopBar := func() {}
	if opts.Progress != nil {
		stopBar = startProgress(opts.Progress, &p.read, totalSize(files))
	}
	perr := p.run(files)
	close(pr.in)
	if err := <-pr.done; err != nil {
		perr = err // the parser stopped for it (errPrepare), or finished
	}
	err := <-w.done
	stopBar()
	res.Stats = p.corr.Stats()
	res.FirstSkipped, _ = p.corr.FirstSkipped()
	res.Added = int(w.added.Load())
	res.Committed, res.Old = w.committed, w.old
	if perr != nil {
		return res, perr
	}
	return res, err
}

// orBuiltIn is r, or the built-in rule of internal hops if r is nil.
func orBuiltIn(r *logparse.InternalRelays) *logparse.InternalRelays {
	if r == nil {
		r, _ = logparse.ParseInternalRelays(nil) // no list: cannot fail
	}
	return r
}

// totalSize is the size of the files that can be measured (not stdin),
// for the progress bar.
func totalSize(files []string) int64 {
	var total int64
	for _, f := range files {
		if f != "-" {
			if fi, err := os.Stat(f); err == nil {
				total += fi.Size()
			}
		}
	}
	return total
}

// writer stores the batches sent on batches through a Bulk, in its own
// goroutine, and sends its error on done when batches is closed.
type writer struct {
	batches   chan *store.Batch
	done      chan error
	added     atomic.Int64
	committed int // set before done is sent
	old       int
}

func startWriter(ctx context.Context, bk Bulk) *writer {
	w := &writer{batches: make(chan *store.Batch, 1), done: make(chan error, 1)}
	go w.run(ctx, bk)
	return w
}

func (w *writer) run(ctx context.Context, bk Bulk) {
	var err error
	for b := range w.batches {
		if err != nil {
			continue // drain, so the parser never blocks
		}
		var n int
		n, err = bk.Add(ctx, b)
		w.added.Add(int64(n))
	}
	if err == nil {
		err = bk.Commit(ctx)
	}
	err = errors.Join(err, bk.Close())
	w.committed, w.old = bk.Committed(), bk.Old()
	w.done <- err
}

// preparer marks the internal hops of each batch of deliveries and
// prepares it for storage (Bulk.PrepareBatch), on a goroutine of its own
// between the parser and the writer: the parser, one goroutine through
// one correlator, is what bounds an import, so it does nothing else.
type preparer struct {
	in chan []delivery.Delivery
	// free holds the deliveries' slices that the store has released
	// (Batch.SetRelease), for the parser's next batches: a new slice a
	// batch was a sixth of an import's garbage.
	free   chan []delivery.Delivery
	failed atomic.Bool // set when a batch could not be prepared
	done   chan error  // its error, once in is closed; out is closed before
}

func startPreparer(relays *logparse.InternalRelays, prepare func([]delivery.Delivery) (*store.Batch, error), out chan<- *store.Batch) *preparer {
	pr := &preparer{in: make(chan []delivery.Delivery, 1), free: make(chan []delivery.Delivery, 2), done: make(chan error, 1)}
	go func() {
		var err error
		for ds := range pr.in {
			if err != nil {
				continue // drain, so the parser never blocks
			}
			relays.Mark(ds)
			var b *store.Batch
			if b, err = prepare(ds); err != nil {
				pr.failed.Store(true)
				continue
			}
			b.SetRelease(func() {
				if len(pr.free) == cap(pr.free) {
					return // enough in hand already
				}
				clear(ds) // their texts are garbage now, not live heap
				select {
				case pr.free <- ds[:0]:
				default:
				}
			})
			out <- b
		}
		close(out)
		pr.done <- err
	}()
	return pr
}

// parser reads the files of an import through one correlator and sends
// the deliveries, in batches, to the preparer.
type parser struct {
	ctx       context.Context
	opts      ImportOptions
	corr      *logparse.Correlator
	out       chan<- []delivery.Delivery
	free      <-chan []delivery.Delivery // the preparer's free slices
	failed    *atomic.Bool               // the preparer's: stop reading
	read      atomic.Int64               // bytes read, for the progress bar
	untrusted *logparse.JournalSkips
	batch     []delivery.Delivery
	trust     *logparse.JournalTrust // opts.Trust's, once asked for (hasTrust)
	hasTrust  bool
}

func (p *parser) run(files []string) error {
	p.batch = make([]delivery.Delivery, 0, importBatch)
	for _, name := range files {
		if err := p.ctx.Err(); err != nil {
			return err
		}
		if err := p.file(name); err != nil {
			return err
		}
	}
	if len(p.batch) > 0 {
		return p.send()
	}
	return nil
}

// file reads one file to its end.
func (p *parser) file(name string) error {
	r, closeFn, ref, err := openLog(name, p.opts.Stdin)
	if err != nil {
		return err
	}
	defer closeFn()
	p.corr.SetRefTime(ref)
	lr := logparse.NewLineReader(&countingReader{r: r, n: &p.read})
	for {
		line, tooLong, err := lr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if err := p.line(line, tooLong); err != nil {
			return err
		}
		if len(p.batch) >= importBatch {
			if err := p.send(); err != nil {
				return err
			}
		}
	}
}

// line feeds one line to the correlator, unless it is too long (skipped)
// or a journal entry not believed (counted).
func (p *parser) line(line []byte, tooLong bool) error {
	if tooLong {
		p.corr.SkipLine(line)
		return nil
	}
	if isJournalEntry(line) {
		if !p.hasTrust && p.opts.Trust != nil {
			t, err := p.opts.Trust()
			if err != nil {
				return err
			}
			*p.trust = t
		}
		p.hasTrust = true
		if v := p.trust.Check(line); v != logparse.JournalBelieved {
			p.untrusted.Add(v)
			return nil
		}
	}
	p.batch = append(p.batch, p.corr.Feed(line)...)
	return nil
}

// send hands the pending deliveries to the preparer.
func (p *parser) send() error {
	if err := p.ctx.Err(); err != nil {
		return err
	}
	if p.failed.Load() {
		return errPrepare // the preparer's error is the one returned
	}
	p.out <- p.batch
	select { // the preparer has the last one
	case p.batch = <-p.free:
	default:
		p.batch = make([]delivery.Delivery, 0, importBatch)
	}
	return nil
}

// errPrepare stops the parser when the preparer has failed.
var errPrepare = errors.New("ingest: a batch could not be prepared")

// isJournalEntry reports whether line is a journalctl -o json line, to
// which the trust rule applies; other lines (syslog, postlog) are
// believed: a file has no journald fields to check.
func isJournalEntry(line []byte) bool {
	i := 0
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++ // not bytes.TrimLeft: its cutset costs more than the loop, on every line
	}
	return i < len(line) && line[i] == '{'
}

// Summary is the line that says what an import read and stored;
// horizon is the pruning horizon, which matters when r.Old > 0.
func (r Result) Summary(horizon time.Time) string {
	present := fmt.Sprintf("%d already present", r.Stats.Deliveries-int64(r.Added)-int64(r.Old))
	if r.Old > 0 {
		present += fmt.Sprintf(", %d older than %s, when deliveries were pruned", r.Old, horizon.Format(time.DateOnly))
	}
	first, untrusted := "", ""
	if r.FirstSkipped != "" {
		first = ", the first: " + r.FirstSkipped
	}
	if n := r.Untrusted.Total(); n > 0 {
		untrusted = fmt.Sprintf(", %d journal entries skipped as not from Postfix (%s)", n, r.Untrusted)
	}
	return fmt.Sprintf("%d lines read, %d deliveries stored (%s), %d lines skipped as malformed%s%s",
		r.Lines(), r.Added, present, r.Stats.Skipped, first, untrusted)
}
