package store

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// Filter selects deliveries. Since is inclusive, Until exclusive; a zero
// time means unbounded. Domain is "" (all), "example.com" (exactly that
// domain), "*.example.com" (example.com and all its subdomains) or
// ".example.com" (subdomains only, as in Postfix policy tables). Host is
// "" (the whole fleet) or the name of one fleet host.
type Filter struct {
	Since, Until time.Time
	Domain       string
	Host         string
}

// tls column of the rollups: NULL (unknown) becomes 2 so it can be part of
// a primary key.
const (
	tlsPlain   = 0
	tlsEnc     = 1
	tlsUnknown = 2
)

const (
	usPerHour = int64(time.Hour / time.Microsecond)
	usPerDay  = 24 * usPerHour
)

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// bounds converts a window to [lo, hi) in microseconds.
func bounds(since, until time.Time) (int64, int64) {
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if !since.IsZero() {
		lo = micros(since)
	}
	if !until.IsZero() {
		hi = micros(until)
	}
	return lo, hi
}

// row is a delivery ready for insertion.
type row struct {
	d       *delivery.Delivery
	us      int64
	key     []byte
	domain  string
	status  string
	tls     int
	trust   string
	relayH  string
	relayP  int
	tlsNull any    // nil (unknown), or int64 0 or 1
	detail  string // see detail.go
	// detailEnd is where detail ends in the batch's details (prepare).
	detailEnd int
}

func prepare(ds []delivery.Delivery) ([]row, error) {
	// One allocation for the keys and one for the details of the batch,
	// not one of each per row: with the row slice itself, these were most
	// of an import's garbage after the deliveries'.
	rows := make([]row, len(ds))
	keys := make([]byte, 0, len(ds)*storedKeyLen)
	details := getScratch()
	defer putScratch(details)
	for i := range ds {
		d := safeDelivery(&ds[i]) // see text.go
		var sum [32]byte
		if !decodeHexKey(sum[:], d.Key) {
			return nil, fmt.Errorf("%w: delivery %d (queue id %s): key %q is not 64 hex digits (sha256)", ErrBadInput, i, d.QueueID, d.Key)
		}
		st, ok := delivery.ParseStatus(strings.ToLower(string(d.Status)))
		if !ok {
			return nil, fmt.Errorf("%w: delivery %d (queue id %s): status %q; accepted: sent, deferred, bounced, expired", ErrBadInput, i, d.QueueID, d.Status)
		}
		if d.Time.IsZero() {
			return nil, fmt.Errorf("%w: delivery %d (queue id %s): zero time", ErrBadInput, i, d.QueueID)
		}
		us := micros(d.Time)
		start := len(keys)
		keys = appendStoredKey(keys, us, sum[:])
		r := row{d: d, us: us, key: keys[start:len(keys):len(keys)], domain: strings.ToLower(d.Domain), status: string(st),
			tls: tlsUnknown, trust: strings.ToLower(string(d.TLSTrust))}
		if d.TLS != nil {
			if *d.TLS {
				r.tls, r.tlsNull = tlsEnc, int64(1)
			} else {
				r.tls, r.tlsNull = tlsPlain, int64(0)
			}
		}
		r.relayH, r.relayP = splitRelay(d.Relay)
		*details = appendDetail(*details, d)
		r.detailEnd = len(*details)
		rows[i] = r
	}
	all, start := string(*details), 0
	for i := range rows {
		rows[i].detail = all[start:rows[i].detailEnd]
		start = rows[i].detailEnd
	}
	return rows, nil
}

// scratchPool holds prepare's buffers for the details of a batch, which
// it copies into one string at the end: grown anew for every batch, they
// were a fifth of an import's garbage.
var scratchPool = sync.Pool{New: func() any { return new([]byte) }}

func getScratch() *[]byte {
	b := scratchPool.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

func putScratch(b *[]byte) {
	if cap(*b) <= 4<<20 { // not one from a batch of huge hostile texts
		scratchPool.Put(b)
	}
}

// decodeHexKey decodes the 64 hex digits of a delivery's key into dst (32
// bytes), without the allocation of hex.DecodeString.
func decodeHexKey(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	bad := byte(0)
	for i := range dst {
		hi, lo := hexValue[s[2*i]], hexValue[s[2*i+1]]
		bad |= hi | lo
		dst[i] = hi<<4 | lo&0x0f
	}
	return bad&0xf0 == 0
}

// hexValue is the value of a hex digit, or 0xff for any other byte.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := byte(0); c < 16; c++ {
		t["0123456789abcdef"[c]] = c
		t["0123456789ABCDEF"[c]] = c
	}
	return t
}()

// splitRelay takes Postfix's relay field, "host[addr]:port", "host[addr]",
// "host[/path]" or "none", and returns the lowercased host and the port
// (0 when absent).
func splitRelay(relay string) (string, int) {
	r := strings.ToLower(relay)
	i := strings.IndexByte(r, '[')
	if i < 0 {
		return r, 0
	}
	host, rest := r[:i], r[i:]
	port := 0
	if j := strings.LastIndex(rest, "]:"); j >= 0 {
		if p, err := strconv.Atoi(rest[j+2:]); err == nil && p > 0 && p < 65536 {
			port = p
		}
	}
	return host, port
}

// dayKey is rollup_day's primary key; hourKey is rollup_hour's.
type dayKey struct {
	day     int64
	rdomain string
	tlsOutcome
	relayAt
}

type hourKey struct {
	hour int64
	tlsOutcome
}

type dayAgg struct{ n, first, last int64 }

// rollups accumulates the rollup increments for the rows a transaction
// actually inserted, so each distinct key is written once.
//
// Counting is a map update per row for each rollup, and a rollup key holds
// up to six strings. So that the maps hash small keys, the parts of a key
// are interned first: the domain, its relay and the row's TLS outcome each
// become a pointer, and a domain remembers its last relay and TLS outcome,
// which the next delivery to it usually shares, so most rows intern with
// string comparisons only.
type rollups struct {
	day  map[dayID]*dayAgg
	hour map[hourID]*int64
	doms map[string]*domClass
	tlss map[tlsOutcome]*tlsOutcome
	rels map[relayAt]*relayAt
}

// tlsOutcome is what a rollup row records of a delivery besides its
// domain, relay and time.
type tlsOutcome struct {
	status                  string
	tls                     int
	trust, protocol, cipher string
	fallback, tlsFailure    bool
}

type relayAt struct {
	host string
	port int
}

// domClass is a recipient domain while counting, with the last relay and
// TLS outcome of its deliveries.
type domClass struct {
	rdomain   string
	lastTLS   *tlsOutcome
	lastRelay *relayAt
}

// internal selects the rollup table: internal hops are counted in
// rollup_day_internal and rollup_hour_internal (see addInternal).
type dayID struct {
	day      int64
	dom      *domClass
	tls      *tlsOutcome
	relay    *relayAt
	internal bool
}

type hourID struct {
	hour     int64
	tls      *tlsOutcome
	internal bool
}

func newRollups() *rollups {
	return &rollups{day: map[dayID]*dayAgg{}, hour: map[hourID]*int64{}, doms: map[string]*domClass{},
		tlss: map[tlsOutcome]*tlsOutcome{}, rels: map[relayAt]*relayAt{}}
}

func (ru *rollups) add(r *row) {
	d := r.d
	dc := ru.doms[r.domain]
	if dc == nil {
		dc = &domClass{rdomain: reverse(r.domain)}
		ru.doms[r.domain] = dc
	}
	o := tlsOutcome{status: r.status, tls: r.tls, trust: r.trust, protocol: d.TLSProtocol, cipher: d.TLSCipher,
		fallback: d.Fallback, tlsFailure: d.TLSFailure}
	tc := dc.lastTLS
	if tc == nil || *tc != o {
		if tc = ru.tlss[o]; tc == nil {
			tc = new(tlsOutcome) // not &o, which would put every o on the heap
			*tc = o
			ru.tlss[o] = tc
		}
		dc.lastTLS = tc
	}
	rel := relayAt{r.relayH, r.relayP}
	rc := dc.lastRelay
	if rc == nil || *rc != rel {
		if rc = ru.rels[rel]; rc == nil {
			rc = new(relayAt)
			*rc = rel
			ru.rels[rel] = rc
		}
		dc.lastRelay = rc
	}
	id := dayID{day: floorDiv(r.us, usPerDay), dom: dc, tls: tc, relay: rc, internal: d.Internal}
	if a := ru.day[id]; a != nil {
		a.n++
		a.first, a.last = min(a.first, r.us), max(a.last, r.us)
	} else {
		ru.day[id] = &dayAgg{n: 1, first: r.us, last: r.us}
	}
	hid := hourID{hour: floorDiv(r.us, usPerHour), tls: tc, internal: d.Internal}
	if n := ru.hour[hid]; n != nil {
		*n++
	} else {
		n = new(int64)
		*n = 1
		ru.hour[hid] = n
	}
}

// write adds the counts to the rollup rows of host hostID.
func (ru *rollups) write(ctx context.Context, t *wtx, hostID int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx) // see insertBatch
	for _, internal := range [...]bool{false, true} {
		if err := ru.writeDays(ctx, t, internal, hostID); err != nil {
			return err
		}
		if err := ru.writeHours(ctx, t, internal, hostID); err != nil {
			return err
		}
	}
	return nil
}

// writeDays writes the day counts of outbound deliveries (internal false)
// or of internal hops.
func (ru *rollups) writeDays(ctx context.Context, t *wtx, internal bool, hostID int64) error {
	// Rows go in primary-key order, many per statement: new rows then
	// append to the b-trees and existing ones are visited in order.
	type dayCount struct {
		key dayKey
		*dayAgg
	}
	days := make([]dayCount, 0, len(ru.day))
	for id, a := range ru.day {
		if id.internal == internal {
			days = append(days, dayCount{dayKey{id.day, id.dom.rdomain, *id.tls, *id.relay}, a})
		}
	}
	if len(days) == 0 {
		return nil
	}
	slices.SortFunc(days, func(a, b dayCount) int { return compareDayKeys(&a.key, &b.key) })
	vals := make([]driver.NamedValue, 0, len(days)*15)
	for _, c := range days {
		k := &c.key
		vals = appendValues(vals, k.rdomain, k.day, k.status, int64(k.tls), k.trust, k.protocol, k.cipher,
			k.fallback, k.tlsFailure, k.host, int64(k.port), c.n, c.first, c.last, hostID)
	}
	table := "rollup_day"
	if internal {
		table = "rollup_day_internal"
	}
	if err := t.upsert(ctx, table, `rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, n, first_time, last_time, host_id`,
		` ON CONFLICT(rdomain, day, status, tls, trust, protocol, cipher, fallback, tls_failure, relay_host, relay_port, host_id) DO UPDATE
			SET n = `+table+`.n + excluded.n, first_time = min(`+table+`.first_time, excluded.first_time), last_time = max(`+table+`.last_time, excluded.last_time)`,
		vals); err != nil {
		return fmt.Errorf("store: update %s: %w", table, err)
	}
	return nil
}

// writeHours is writeDays for the hour rollups.
func (ru *rollups) writeHours(ctx context.Context, t *wtx, internal bool, hostID int64) error {
	type hourCount struct {
		key hourKey
		n   int64
	}
	hours := make([]hourCount, 0, len(ru.hour))
	for id, n := range ru.hour {
		if id.internal == internal {
			hours = append(hours, hourCount{hourKey{id.hour, *id.tls}, *n})
		}
	}
	if len(hours) == 0 {
		return nil
	}
	slices.SortFunc(hours, func(a, b hourCount) int { return compareHourKeys(&a.key, &b.key) })
	vals := make([]driver.NamedValue, 0, len(hours)*10)
	for _, h := range hours {
		k := &h.key
		vals = appendValues(vals, k.hour, k.status, int64(k.tls), k.trust, k.protocol, k.cipher, k.fallback, k.tlsFailure, h.n, hostID)
	}
	table := "rollup_hour"
	if internal {
		table = "rollup_hour_internal"
	}
	if err := t.upsert(ctx, table, `hour, status, tls, trust, protocol, cipher, fallback, tls_failure, n, host_id`,
		` ON CONFLICT(hour, status, tls, trust, protocol, cipher, fallback, tls_failure, host_id) DO UPDATE SET n = `+table+`.n + excluded.n`,
		vals); err != nil {
		return fmt.Errorf("store: update %s: %w", table, err)
	}
	return nil
}

// appendValues appends vs as driver arguments; they must be of the types
// the driver binds as they are (int64, string, []byte, bool, nil).
func appendValues(dst []driver.NamedValue, vs ...any) []driver.NamedValue {
	for _, v := range vs {
		dst = append(dst, driver.NamedValue{Value: v})
	}
	return dst
}

// compareDayKeys orders day keys as rollup_day's primary key does (text by
// bytes, false before true).
func compareDayKeys(a, b *dayKey) int {
	if c := strings.Compare(a.rdomain, b.rdomain); c != 0 {
		return c
	}
	if c := cmp.Compare(a.day, b.day); c != 0 {
		return c
	}
	if c := compareOutcomes(&a.tlsOutcome, &b.tlsOutcome); c != 0 {
		return c
	}
	if c := strings.Compare(a.host, b.host); c != 0 {
		return c
	}
	return cmp.Compare(a.port, b.port)
}

// compareHourKeys orders hour keys as rollup_hour's primary key does.
func compareHourKeys(a, b *hourKey) int {
	if c := cmp.Compare(a.hour, b.hour); c != 0 {
		return c
	}
	return compareOutcomes(&a.tlsOutcome, &b.tlsOutcome)
}

// compareOutcomes orders the TLS outcome columns, which both rollups' keys
// hold in this order.
func compareOutcomes(a, b *tlsOutcome) int {
	if c := strings.Compare(a.status, b.status); c != 0 {
		return c
	}
	if c := cmp.Compare(a.tls, b.tls); c != 0 {
		return c
	}
	if c := strings.Compare(a.trust, b.trust); c != 0 {
		return c
	}
	if c := strings.Compare(a.protocol, b.protocol); c != 0 {
		return c
	}
	if c := strings.Compare(a.cipher, b.cipher); c != 0 {
		return c
	}
	if c := compareBool(a.fallback, b.fallback); c != 0 {
		return c
	}
	return compareBool(a.tlsFailure, b.tlsFailure)
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

const (
	// The columns detail replaces get constants, which cost nothing to
	// bind (see migration 2).
	insertHead = `INSERT OR IGNORE INTO deliveries(time, domain, relay, status, tls, tls_trust, tls_protocol, tls_cipher,
	fallback, tls_failure, key, detail, internal, host_id, queue_id, recipient, orig_to, dsn, reason, process, pid, host) VALUES `
	insertTuple = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', '', '', '', '', '', 0, '')`
	// Up to insertChunk rows (a power of two) go in one statement: in this
	// SQLite (pure Go) the per-statement cost is about a third of a one-row
	// insert. A 1M-line import measured 1-3% faster with 128 than with 32
	// (256: no better).
	insertChunk = 128
)

// insertStmts[k] inserts 1<<k rows. A batch goes in chunks of insertChunk
// rows, and its rest in chunks of decreasing powers of two, so a
// transaction prepares at most one statement per size.
var insertStmts = func() []string {
	var out []string
	for n := 1; n <= insertChunk; n *= 2 {
		out = append(out, insertHead+valuesList(insertTuple, n))
	}
	return out
}()

// values appends the insert arguments of r, in the types the driver binds
// without conversion. The host (its key suffix and host_id) is host 0's
// until forHost.
func (r *row) values(dst []driver.NamedValue) []driver.NamedValue {
	d := r.d
	return appendValues(dst, r.us, r.domain, d.Relay, boxText(r.status), r.tlsNull, boxText(r.trust), boxText(d.TLSProtocol),
		boxText(d.TLSCipher), d.Fallback, d.TLSFailure, r.key, r.detail, d.Internal, int64(0))
}

// boxText returns s as an interface value, for the texts most rows repeat
// without an allocation: a string put in an interface is copied to the
// heap, a constant's is not. These are the statuses, the trust levels, the
// TLS protocol versions and the cipher suites of TLS 1.3 (RFC 8446, B.4).
func boxText(s string) any {
	switch s {
	case "":
		return ""
	case "sent":
		return "sent"
	case "deferred":
		return "deferred"
	case "bounced":
		return "bounced"
	case "expired":
		return "expired"
	case "anonymous":
		return "anonymous"
	case "untrusted":
		return "untrusted"
	case "trusted":
		return "trusted"
	case "verified":
		return "verified"
	case "TLSv1.3":
		return "TLSv1.3"
	case "TLSv1.2":
		return "TLSv1.2"
	case "TLSv1.1":
		return "TLSv1.1"
	case "TLSv1":
		return "TLSv1"
	case "TLS_AES_256_GCM_SHA384":
		return "TLS_AES_256_GCM_SHA384"
	case "TLS_AES_128_GCM_SHA256":
		return "TLS_AES_128_GCM_SHA256"
	case "TLS_CHACHA20_POLY1305_SHA256":
		return "TLS_CHACHA20_POLY1305_SHA256"
	case "TLS_AES_128_CCM_SHA256":
		return "TLS_AES_128_CCM_SHA256"
	case "TLS_AES_128_CCM_8_SHA256":
		return "TLS_AES_128_CCM_8_SHA256"
	}
	return s
}

// insertCols is the number of arguments row.values appends; hostCol is
// the place of host_id among them.
const (
	insertCols = 14
	hostCol    = 13
)

// Batch is a set of deliveries checked and converted for storage. Making
// one does not touch the database, so a bulk import prepares the next batch
// on one core while another writes the current one.
type Batch struct {
	rows   []row
	copied []byte // the rows for PostgreSQL's COPY; nil until copyData
	host   int64  // the host id the keys and copied are for (forHost)
	// release is called once a Bulk no longer reads the deliveries (see
	// SetRelease).
	release func()
}

// SetRelease has f called once a Bulk that stored b no longer reads the
// deliveries b was prepared from: when their rows have been counted into
// the rollups, before the transaction commits. An import reuses their
// memory for the next batches. f is not called for a batch whose Add
// failed, nor by the other ways of storing a batch.
func (b *Batch) SetRelease(f func()) { b.release = f }

// PrepareBatch validates ds and prepares it for storage. It fails, naming
// the first bad delivery, if any has a malformed key, an unknown status or
// no time. Text fields that PostgreSQL would refuse (NUL, invalid UTF-8)
// are stored with U+FFFD in their place, on either engine (see text.go);
// ds itself is not changed. ds must not change until the transaction that
// stores the batch has ended (a Bulk counts the rows into the rollups after
// Add returns).
func PrepareBatch(ds []delivery.Delivery) (*Batch, error) {
	rows, err := prepare(ds)
	if err != nil {
		return nil, err
	}
	return &Batch{rows: rows}, nil
}

// PrepareBatch is the package function of the same name for s's engine.
// On PostgreSQL the COPY data is encoded here, on the preparing goroutine,
// once the host the Bulk writes as is known (after its first Add): the
// writing goroutine, which waits on the server, then only sends it.
func (bk *Bulk) PrepareBatch(ds []delivery.Delivery) (*Batch, error) {
	b, err := PrepareBatch(ds)
	if err == nil && bk.s.eng == engPostgres && len(b.rows) >= copyMinRows {
		if h := bk.knownHost.Load(); h > 0 {
			b.forHost(h - 1)
			b.copyData()
		}
	}
	return b, err
}

// appendArgs appends the insert arguments of rows [from, to) of b, for
// b's host. They are computed for each statement, by the writer, into a
// buffer it reuses: computed for a whole batch when it was prepared, they
// were 560 bytes a row of pointers that every collection of an import
// had to scan, for two or three batches at a time.
func (b *Batch) appendArgs(dst []driver.NamedValue, from, to int) []driver.NamedValue {
	for i := from; i < to; i++ {
		dst = b.rows[i].values(dst)
		dst[len(dst)-insertCols+hostCol].Value = b.host
	}
	return dst
}

// Len returns the number of deliveries in the batch.
func (b *Batch) Len() int { return len(b.rows) }

// forHost makes b store its rows as host id's: host_id, and the key
// suffix of hosts other than 0 (see hosts.go). It changes b in place;
// calling it again with another id is fine.
func (b *Batch) forHost(id int64) {
	if b.host == id {
		return
	}
	for i := range b.rows {
		r := &b.rows[i]
		r.key = appendKeySuffix(r.key[:storedKeyLen:storedKeyLen], id)
	}
	b.host, b.copied = id, nil
}

// since returns b without the rows before h (unix microseconds) and how
// many it left out; b itself when there are none. The result is for b's
// host.
func (b *Batch) since(h int64) (*Batch, int) {
	old := 0
	for i := range b.rows {
		if b.rows[i].us < h {
			old++
		}
	}
	if old == 0 {
		return b, 0 // the usual case: no copy
	}
	kept := make([]row, 0, len(b.rows)-old)
	for i := range b.rows {
		if b.rows[i].us >= h {
			kept = append(kept, b.rows[i])
		}
	}
	nb := &Batch{rows: kept, host: b.host} // the rows' keys are b.host's already
	return nb, old
}

// insertBatch inserts the rows of b with INSERT OR IGNORE, so keys already
// stored are skipped. It returns the rows it offered (those of b from the
// pruning horizon on, see Prune), which of them it skipped (nil when none),
// how many it inserted, and how many it left out as older than the horizon.
//
// Rows go in chunks of up to insertChunk per statement. When a statement inserts
// every row of its chunk (RowsAffected), there is nothing more to do.
// When it skips some, the inserted ones are exactly those with a rowid
// above the table's maximum before the statement (new rowids are max+1 and
// this transaction is the only writer); their keys tell which rows were
// skipped.
//
// The rows are stored as host hostID's (Batch.forHost).
func insertBatch(ctx context.Context, t *wtx, b *Batch, hostID int64) (rows []row, skipped []bool, added, old int, _ error) {
	if len(b.rows) == 0 {
		return nil, nil, 0, 0, nil
	}
	b.forHost(hostID)
	// The statements run without the caller's cancellation: with a
	// cancellable context the driver starts a watcher per statement.
	// Cancellation is checked between chunks instead.
	ectx := context.WithoutCancel(ctx)
	h, err := t.horizon(ectx)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	b, old = b.since(h)
	rows = b.rows
	if len(rows) == 0 {
		return nil, nil, 0, old, nil
	}
	if t.eng == engPostgres {
		skipped, added, err = insertReturning(ctx, t, b)
		return rows, skipped, added, old, err
	}
	var maxID int64
	if err := t.QueryRowContext(ectx, `SELECT coalesce(max(id), 0) FROM deliveries`).Scan(&maxID); err != nil {
		return nil, nil, 0, 0, fmt.Errorf("store: insert: %w", err)
	}
	for i := 0; i < len(rows); {
		if err := ctx.Err(); err != nil {
			return nil, nil, 0, 0, err
		}
		k := bits.Len(uint(min(insertChunk, len(rows)-i))) - 1
		n, q := 1<<k, insertStmts[k]
		chunk := rows[i : i+n]
		t.args = b.appendArgs(t.args[:0], i, i+n)
		res, err := t.exec(ectx, q, t.args)
		if err != nil {
			return nil, nil, 0, 0, fmt.Errorf("store: insert deliveries (queue id %s...): %w", chunk[0].d.QueueID, err)
		}
		ins, err := res.RowsAffected()
		if err != nil {
			return nil, nil, 0, 0, fmt.Errorf("store: insert deliveries: %w", err)
		}
		if ins < int64(n) {
			if skipped == nil {
				skipped = make([]bool, len(rows))
			}
			if err := markSkipped(ectx, t.Tx, chunk, maxID, ins, skipped[i:i+n]); err != nil {
				return nil, nil, 0, 0, err
			}
		}
		if ins > 0 {
			if maxID, err = res.LastInsertId(); err != nil {
				return nil, nil, 0, 0, fmt.Errorf("store: insert deliveries: %w", err)
			}
		}
		added += int(ins)
		i += n
	}
	clear(t.args) // no texts kept alive by the buffer
	return rows, skipped, added, old, nil
}

// countInserted adds to ru the rows that insertBatch did not skip.
func (ru *rollups) countInserted(rows []row, skipped []bool) {
	for i := range rows {
		if skipped == nil || !skipped[i] {
			ru.add(&rows[i])
		}
	}
}

// markSkipped sets skipped[j] for the rows of chunk that the last statement
// did not insert: all but those stored with a rowid above maxID. A key
// repeated within the chunk was inserted from its first occurrence.
func markSkipped(ctx context.Context, tx *sql.Tx, chunk []row, maxID, n int64, skipped []bool) error {
	rs, err := tx.QueryContext(ctx, `SELECT key FROM deliveries WHERE id > ?`, maxID)
	if err != nil {
		return fmt.Errorf("store: insert deliveries: %w", err)
	}
	defer rs.Close()
	inserted := make(map[string]bool, n)
	for rs.Next() {
		var k []byte
		if err := rs.Scan(&k); err != nil {
			return fmt.Errorf("store: insert deliveries: %w", err)
		}
		inserted[string(k)] = true
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("store: insert deliveries: %w", err)
	}
	if int64(len(inserted)) != n {
		return fmt.Errorf("store: insert deliveries: %d rows inserted but %d found", n, len(inserted))
	}
	for j := range chunk {
		if k := string(chunk[j].key); inserted[k] {
			delete(inserted, k)
		} else {
			skipped[j] = true
		}
	}
	return nil
}

// CommitBatch stores deliveries and the follower checkpoint for source in
// one transaction, so that after a crash the follower resumes exactly where
// the stored rows end. Deliveries whose Key is already stored are skipped
// (and do not count in the rollups), and so are deliveries older than the
// pruning horizon. It returns how many rows were added.
func (s *Store) CommitBatch(ctx context.Context, source string, ds []delivery.Delivery, checkpoint []byte) (int, error) {
	return s.CommitBatchEach(ctx, source, ds, checkpoint, nil)
}

// CommitBatchEach is CommitBatch that also calls added, once the
// transaction has committed, for each delivery it added: not for those
// already stored, nor for those before the prune horizon. Metrics count
// them, so that a crash or a failed commit never counts a delivery that
// is not stored, and a re-read never counts one twice.
func (s *Store) CommitBatchEach(ctx context.Context, source string, ds []delivery.Delivery, checkpoint []byte, added func(*delivery.Delivery)) (int, error) {
	if strings.TrimSpace(source) == "" {
		return 0, fmt.Errorf("%w: empty checkpoint source", ErrBadInput)
	}
	source = safeText(source) // a file name need not be UTF-8; Checkpoint does the same
	return s.commit(ctx, ds, added, func(tx *sql.Tx, hostID int64) error {
		if checkpoint == nil {
			checkpoint = []byte{}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO checkpoints(host_id, source, data, updated) VALUES (?, ?, ?, ?)
			ON CONFLICT(host_id, source) DO UPDATE SET data = excluded.data, updated = excluded.updated`,
			hostID, source, checkpoint, s.now().Unix()); err != nil {
			return fmt.Errorf("store: save checkpoint %s: %w", source, err)
		}
		return nil
	})
}

// AddDeliveries stores deliveries without a checkpoint (bulk import), with
// the same idempotency as CommitBatch. It returns how many rows were added.
func (s *Store) AddDeliveries(ctx context.Context, ds []delivery.Delivery) (int, error) {
	return s.commit(ctx, ds, nil, nil)
}

func (s *Store) commit(ctx context.Context, ds []delivery.Delivery, each func(*delivery.Delivery), extra func(*sql.Tx, int64) error) (int, error) {
	b, err := PrepareBatch(ds)
	if err != nil {
		return 0, err
	}
	var (
		added   int
		rows    []row
		skipped []bool
	)
	err = s.withWtx(ctx, func(t *wtx) error {
		hostID, err := s.hostID(ctx, t.Tx)
		if err != nil {
			return err
		}
		var n int
		rows, skipped, n, _, err = insertBatch(ctx, t, b, hostID)
		if err != nil {
			return err
		}
		ru := newRollups()
		ru.countInserted(rows, skipped)
		if err := ru.write(ctx, t, hostID); err != nil {
			return err
		}
		if extra != nil {
			if err := extra(t.Tx, hostID); err != nil {
				return err
			}
		}
		added = n
		return nil
	})
	if err != nil {
		return 0, err
	}
	if each != nil {
		for i := range rows {
			if skipped == nil || !skipped[i] {
				each(rows[i].d)
			}
		}
	}
	return added, nil
}

// Checkpoint returns the checkpoint last stored for source by the Store's
// host (SetHost), or nil if none. It registers the host first (see
// hosts.go), in a write transaction, so that a follower's first read of an
// upgraded database finds the checkpoint stored before the upgrade.
func (s *Store) Checkpoint(ctx context.Context, source string) ([]byte, error) {
	var data []byte
	source = safeText(source)
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		id, err := s.hostID(ctx, tx)
		if err != nil {
			return err
		}
		err = tx.QueryRowContext(ctx, `SELECT data FROM checkpoints WHERE host_id = ? AND source = ?`, id, source).Scan(&data)
		if errors.Is(err, sql.ErrNoRows) {
			data = nil
			return nil
		}
		if err != nil {
			return fmt.Errorf("store: read checkpoint %s: %w", source, err)
		}
		if data == nil {
			data = []byte{}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return data, nil
}

// Deliveries calls fn for each delivery matching f, in time order (ties in
// insertion order). It stops at and returns the first error from fn.
//
// There is no index on deliveries(domain) (it would cost a third of the
// insert time); with a domain filter, the daily rollup tells which days
// hold matching deliveries and only those days are read.
func (s *Store) Deliveries(ctx context.Context, f Filter, fn func(delivery.Delivery) error) error {
	m, err := windowMatcher(f.Domain, f.Host)
	if err != nil {
		return err
	}
	lo, hi := bounds(f.Since, f.Until)
	frag, args := m.rawWhere()
	q := `SELECT ` + deliveryCols + `
		FROM deliveries WHERE time >= ? AND time < ? AND ` + frag + ` ORDER BY time, id`
	return s.read(ctx, func(tx *sql.Tx) error {
		ranges, err := dayRanges(ctx, tx, m, lo, hi, true)
		if err != nil {
			return err
		}
		for _, rg := range ranges {
			if err := streamDeliveries(ctx, tx, q, append([]any{rg[0], rg[1]}, args...), fn); err != nil {
				return err
			}
		}
		return nil
	})
}

// deliveryCols are the columns streamDeliveries reads, in its order.
const deliveryCols = `time, queue_id, recipient, orig_to, domain, relay, status, dsn, reason, tls, tls_trust, tls_protocol,
	tls_cipher, fallback, tls_failure, process, pid, host, key, id, detail, internal, host_id`

// streamDeliveries runs q, which selects deliveryCols, and calls fn with
// each delivery.
func streamDeliveries(ctx context.Context, tx *sql.Tx, q string, args []any, fn func(delivery.Delivery) error) error {
	hosts, err := hostNames(ctx, tx)
	if err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("store: query deliveries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			d              delivery.Delivery
			us, id, hostID int64
			tls            sql.NullBool
			key            []byte
			detail         sql.NullString
		)
		if err := rows.Scan(&us, &d.QueueID, &d.Recipient, &d.OrigTo, &d.Domain, &d.Relay, &d.Status, &d.DSN, &d.Reason,
			&tls, &d.TLSTrust, &d.TLSProtocol, &d.TLSCipher, &d.Fallback, &d.TLSFailure, &d.Process, &d.PID, &d.LogHost, &key, &id, &detail, &d.Internal, &hostID); err != nil {
			return fmt.Errorf("store: read delivery: %w", err)
		}
		if detail.Valid {
			if err := decodeDetail(detail.String, &d); err != nil {
				return fmt.Errorf("store: read delivery %d: detail column: %w", id, err)
			}
		}
		d.Time = fromMicros(us)
		if tls.Valid {
			b := tls.Bool
			d.TLS = &b
		}
		d.Host = hosts[hostID]
		if len(key) >= storedKeyLen {
			key = key[8:storedKeyLen] // see storedKey and appendKeySuffix
		}
		d.Key = hex.EncodeToString(key)
		if err := fn(d); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: query deliveries: %w", err)
	}
	return nil
}

// dayRanges returns, in time order, the parts of [lo, hi) that lie on days
// where rollup_day (and with internal, rollup_day_internal) has deliveries
// matching m, adjacent days merged. For an unfiltered matcher it is [lo, hi)
// itself.
func dayRanges(ctx context.Context, tx *sql.Tx, m matcher, lo, hi int64, internal bool) ([][2]int64, error) {
	if lo >= hi {
		return nil, nil
	}
	if m.kind == matchAll {
		return [][2]int64{{lo, hi}}, nil
	}
	d0, d1 := int64(math.MinInt64), int64(math.MaxInt64)
	if lo != math.MinInt64 {
		d0 = floorDiv(lo, usPerDay)
	}
	if hi != math.MaxInt64 {
		d1 = floorDiv(hi-1, usPerDay)
	}
	rw, ra := m.rollWhere()
	q, args := `SELECT DISTINCT day FROM rollup_day WHERE day >= ? AND day <= ? AND `+rw+` ORDER BY day`, cat([]any{d0, d1}, ra)
	if internal {
		q = `SELECT day FROM rollup_day WHERE day >= ? AND day <= ? AND ` + rw + `
			UNION SELECT day FROM rollup_day_internal WHERE day >= ? AND day <= ? AND ` + rw + ` ORDER BY day`
		args = cat(args, args)
	}
	var out [][2]int64
	err := queryRows(ctx, tx, "delivery days", q, args, func(rows *sql.Rows) error {
		var day int64
		if err := rows.Scan(&day); err != nil {
			return err
		}
		a, b := max(day*usPerDay, lo), min((day+1)*usPerDay, hi)
		if n := len(out); n > 0 && out[n-1][1] == a {
			out[n-1][1] = b
		} else {
			out = append(out, [2]int64{a, b})
		}
		return nil
	})
	return out, err
}

// storedKeyLen is the length of a stored key of host 0 (appendStoredKey).
const storedKeyLen = 8 + 32

// appendStoredKey appends the identity stored for a delivery line, its
// stored key: its time stamp us (unix microseconds, big-endian) followed
// by the line's SHA-256, sum. The same line always gives the same key, so
// re-reading is idempotent; and since logs are written in time order, new
// keys land at the right edge of the unique index instead of at random
// places, which keeps bulk imports fast as the table grows.
func appendStoredKey(dst []byte, us int64, sum []byte) []byte {
	return append(binary.BigEndian.AppendUint64(dst, uint64(us)), sum...)
}
