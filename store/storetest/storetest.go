// Package storetest is the conformance suite of the storage seam
// (ARCHITECTURE.md, "Add a store engine"): the behaviour that the
// follower, the reports, the policy commands and the daemon rely on, tested
// through the seam's methods only. Every store implementation must pass
// Run; store/conformance_test.go runs it against the SQLite store.
//
// The suite knows no SQL and no schema. It writes through the same calls
// as mailtls does and checks what comes back against its own count of what
// it wrote.
package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/report"
	"github.com/mailtls/mailtls/store"
)

// Backend is a store implementation: the union of the seam's interfaces
// (the follower's committer, the report reader, the override writer, the
// daemon's override source, pruning) and Close. cmd/mailtls and ingest
// check that every Backend satisfies the interfaces they use.
type Backend interface {
	// The follower's committer.
	CommitBatch(ctx context.Context, source string, ds []delivery.Delivery, checkpoint []byte) (int, error)
	CommitBatchEach(ctx context.Context, source string, ds []delivery.Delivery, checkpoint []byte, added func(*delivery.Delivery)) (int, error)
	Checkpoint(ctx context.Context, source string) ([]byte, error)
	Deliveries(ctx context.Context, f store.Filter, fn func(delivery.Delivery) error) error

	// The report reader.
	report.Source

	// The override writer.
	SetOverride(ctx context.Context, o store.Override, actor string) error
	RemoveOverride(ctx context.Context, key, actor string) error
	ImportOverrides(ctx context.Context, ovs []store.Override, actor string) (int, error)
	Overrides(ctx context.Context) ([]store.Override, error)
	History(ctx context.Context, key string) ([]store.Change, error)

	// The daemon's override source: the version changes on every change.
	OverridesVersion(ctx context.Context) (uint64, error)
	OverridePolicies(ctx context.Context, fn func(key, policy string, expires time.Time)) error
	// Its point queries, while the daemon's first load runs.
	OverridesFor(ctx context.Context, keys []string, fn func(key, policy string, expires time.Time)) error

	// Retention.
	Prune(ctx context.Context, before time.Time) (store.PruneResult, error)

	// The fleet host the backend writes deliveries and checkpoints as, and
	// the lock that keeps a second follower of one host and source out.
	SetHost(ctx context.Context, name string) error
	LockSource(ctx context.Context, host, source string) (release func(), err error)

	Close() error
}

// T is the part of *testing.T the cases use, so that a test of the suite
// itself can run them with a recorder (see store/conformance_test.go).
type T interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Case is one behaviour of the suite. Run gets a freshly opened, empty
// backend.
type Case struct {
	Name string
	Run  func(t T, b Backend)
}

// Cases returns the suite's cases, in the order Run runs them.
func Cases() []Case {
	return []Case{
		{"CommitExactlyOnce", commitExactlyOnce},
		{"ExactlyOncePerHost", exactlyOncePerHost},
		{"OneFollowerPerHostAndSource", oneFollowerPerHostAndSource},
		{"FailedCommitStoresNothing", failedCommit},
		{"WindowsAndRollups", windows},
		{"OverrideHistory", overrideHistory},
		{"ChangeNotification", changeNotification},
		{"PruneKeepsRollups", pruneKeepsRollups},
		{"HostileText", hostileText},
	}
}

// Run runs every case as a subtest of t, each on a backend from open. open
// must return an empty store, and arrange for it to be removed
// (t.Cleanup); the suite closes it.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	for _, c := range Cases() {
		t.Run(c.Name, func(t *testing.T) {
			b := open(t)
			defer b.Close()
			c.Run(t, b)
		})
	}
}

// day0 is the first day of the suite's deliveries: a UTC midnight ten days
// ago, so that pruning (which refuses the future) can cut into them.
func day0() time.Time {
	return time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -10)
}

func ptr(b bool) *bool { return &b }

// newDelivery makes a valid delivery; seq makes its key unique.
func newDelivery(seq string, at time.Time, domain string, status delivery.Status, tls *bool, internal bool) delivery.Delivery {
	sum := sha256.Sum256([]byte(seq))
	d := delivery.Delivery{Time: at, LogHost: "mail", Process: "postfix/smtp", PID: 100, QueueID: "4Q0ABC" + fmt.Sprint(len(seq)),
		Recipient: "user@" + domain, Domain: domain, Relay: "mx." + domain + "[192.0.2.7]:25", Status: status,
		TLS: tls, Internal: internal, Key: hex.EncodeToString(sum[:])}
	if tls != nil && *tls {
		d.TLSTrust, d.TLSProtocol, d.TLSCipher = "Trusted", "TLSv1.3", "TLS_AES_256_GCM_SHA384"
	}
	if status == delivery.Deferred {
		d.DSN, d.Reason = "4.4.1", "connection timed out"
	}
	if internal {
		d.Relay, d.Process = "127.0.0.1[127.0.0.1]:10025", "postfix/lmtp"
	}
	return d
}

// series makes n sent, encrypted deliveries to example.com, an hour apart
// from day0.
func series(prefix string, n int) []delivery.Delivery {
	ds := make([]delivery.Delivery, n)
	for i := range ds {
		ds[i] = newDelivery(fmt.Sprintf("%s-%d", prefix, i), day0().Add(time.Duration(i)*time.Hour+time.Minute),
			"example.com", delivery.Sent, ptr(true), false)
	}
	return ds
}

func count(t T, b Backend, f store.Filter) int {
	t.Helper()
	n := 0
	if err := b.Deliveries(context.Background(), f, func(delivery.Delivery) error { n++; return nil }); err != nil {
		t.Fatalf("Deliveries(%+v): %v", f, err)
	}
	return n
}

func summary(t T, b Backend, w store.Window) store.Summary {
	t.Helper()
	s, err := b.Summary(context.Background(), w)
	if err != nil {
		t.Fatalf("Summary(%+v): %v", w, err)
	}
	return s
}

func checkpoint(t T, b Backend, source string) []byte {
	t.Helper()
	ck, err := b.Checkpoint(context.Background(), source)
	if err != nil {
		t.Fatalf("Checkpoint(%q): %v", source, err)
	}
	return ck
}

func commit(t T, b Backend, source string, ds []delivery.Delivery, ck []byte, want int) {
	t.Helper()
	n, err := b.CommitBatch(context.Background(), source, ds, ck)
	if err != nil {
		t.Fatalf("CommitBatch(%d deliveries): %v", len(ds), err)
	}
	if n != want {
		t.Errorf("CommitBatch(%d deliveries) added %d, want %d", len(ds), n, want)
	}
}

// commitExactlyOnce: a delivery is stored once whatever the batches that
// carry it, and the checkpoint is the one committed with the last batch.
func commitExactlyOnce(t T, b Backend) {
	ctx := context.Background()
	const src, other = "file:/var/log/mail.log", "journal"
	if ck := checkpoint(t, b, src); ck != nil {
		t.Errorf("checkpoint of a new store = %q, want nil", ck)
	}
	ds := series("once", 20)
	commit(t, b, src, ds[:10], []byte("ck1"), 10)
	if ck := checkpoint(t, b, src); string(ck) != "ck1" {
		t.Errorf("checkpoint = %q, want ck1", ck)
	}
	// The same batch again (a follower restarted before its checkpoint
	// was read back): nothing is added, not to the rows nor the rollups.
	commit(t, b, src, ds[:10], []byte("ck1"), 0)
	if n := count(t, b, store.Filter{}); n != 10 {
		t.Errorf("after committing a batch twice: %d rows, want 10", n)
	}
	if s := summary(t, b, store.Window{}); s.Deliveries != 10 || s.Encrypted != 10 {
		t.Errorf("after committing a batch twice: summary has %d deliveries, %d encrypted; want 10, 10", s.Deliveries, s.Encrypted)
	}
	// An overlapping batch adds only the new deliveries, and tells which.
	var got []string
	n, err := b.CommitBatchEach(ctx, src, ds[5:15], []byte("ck2"), func(d *delivery.Delivery) { got = append(got, d.Key) })
	if err != nil {
		t.Fatalf("CommitBatchEach: %v", err)
	}
	var want []string
	for _, d := range ds[10:15] {
		want = append(want, d.Key)
	}
	if n != 5 || !slices.Equal(got, want) {
		t.Errorf("overlapping batch: added %d, reported %d keys; want 5 keys, those of the new deliveries in order", n, len(got))
	}
	if ck := checkpoint(t, b, src); string(ck) != "ck2" {
		t.Errorf("checkpoint = %q, want ck2", ck)
	}
	// A batch without deliveries still moves the checkpoint (log lines
	// that were not deliveries), and an empty checkpoint is not "none".
	commit(t, b, src, nil, []byte("ck3"), 0)
	if ck := checkpoint(t, b, src); string(ck) != "ck3" {
		t.Errorf("checkpoint after an empty batch = %q, want ck3", ck)
	}
	commit(t, b, other, nil, []byte{}, 0)
	if ck := checkpoint(t, b, other); ck == nil || len(ck) != 0 {
		t.Errorf("empty checkpoint read back as %#v, want empty and non-nil", ck)
	}
	if ck := checkpoint(t, b, src); string(ck) != "ck3" {
		t.Errorf("checkpoints of two sources are not kept apart: %q, want ck3", ck)
	}
	if s := summary(t, b, store.Window{}); s.Deliveries != 15 {
		t.Errorf("summary counts %d deliveries, want 15", s.Deliveries)
	}
	if _, err := b.CommitBatch(ctx, " ", ds[15:], []byte("x")); err == nil {
		t.Errorf("CommitBatch with an empty source: no error")
	}
}

func setHost(t T, b Backend, name string) {
	t.Helper()
	if err := b.SetHost(context.Background(), name); err != nil {
		t.Fatalf("SetHost(%q): %v", name, err)
	}
}

// exactlyOncePerHost: the same log lines written by two fleet hosts are
// two sets of deliveries, each stored once; each host has its own
// checkpoint of a source; reports and listings split them by host.
func exactlyOncePerHost(t T, b Backend) {
	ctx := context.Background()
	const src = "file:/var/log/mail.log"
	ds := series("fleet", 30)
	setHost(t, b, "mx-a")
	commit(t, b, src, ds[:20], []byte("a1"), 20)
	setHost(t, b, "mx-b.example.net")
	if ck := checkpoint(t, b, src); ck != nil {
		t.Errorf("checkpoint of host mx-b.example.net = %q before it committed, want nil (mx-a's is not its own)", ck)
	}
	commit(t, b, src, ds, []byte("b1"), 30)
	commit(t, b, src, ds[10:], []byte("b2"), 0)
	setHost(t, b, "mx-a")
	if ck := checkpoint(t, b, src); string(ck) != "a1" {
		t.Errorf("checkpoint of mx-a = %q after mx-b.example.net committed, want a1", ck)
	}
	commit(t, b, src, ds[:25], []byte("a2"), 5)
	setHost(t, b, "mx-b.example.net")
	if ck := checkpoint(t, b, src); string(ck) != "b2" {
		t.Errorf("checkpoint of mx-b.example.net = %q after mx-a committed, want b2", ck)
	}
	if n := count(t, b, store.Filter{}); n != 55 {
		t.Errorf("fleet: %d rows, want 55 (25 of mx-a, 30 of mx-b.example.net)", n)
	}
	for host, want := range map[string]int{"mx-a": 25, "mx-b.example.net": 30, "mx-c": 0} {
		got := 0
		err := b.Deliveries(ctx, store.Filter{Host: host}, func(d delivery.Delivery) error {
			got++
			if d.Host != host {
				t.Errorf("Deliveries(host %s) gave a delivery of host %q", host, d.Host)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Deliveries(host %s): %v", host, err)
		}
		if got != want {
			t.Errorf("Deliveries(host %s): %d rows, want %d", host, got, want)
		}
		// Whole days from the rollups, and partial ones from raw rows.
		for _, w := range []store.Window{{Host: host}, {Host: host, Since: day0().Add(90 * time.Minute), Until: day0().Add(26 * time.Hour)}} {
			wantW := want
			if !w.Since.IsZero() {
				wantW = max(0, min(want-1, 25)-1) // deliveries 2 to 25 of the series (1 minute past each hour)
			}
			if s := summary(t, b, w); s.Deliveries != int64(wantW) {
				t.Errorf("Summary(%+v): %d deliveries, want %d", w, s.Deliveries, wantW)
			}
		}
	}
	if s := summary(t, b, store.Window{}); s.Deliveries != 55 {
		t.Errorf("fleet summary: %d deliveries, want 55", s.Deliveries)
	}
	for _, w := range []store.Window{{}, {Domain: "example.com"}, {Since: day0().Add(30 * time.Minute), Until: day0().Add(50 * time.Hour)}} {
		rows, err := b.ReportBy(ctx, w, "host", 0)
		if err != nil {
			t.Fatalf("ReportBy(%+v, host): %v", w, err)
		}
		got := map[string]int64{}
		var total int64
		for _, r := range rows {
			got[r.Key] = r.Deliveries
			total += r.Deliveries
		}
		if s := summary(t, b, w); total != s.Deliveries || len(rows) != 2 {
			t.Errorf("ReportBy(%+v, host) = %v; want two hosts summing to the summary's %d", w, got, s.Deliveries)
		}
		for _, host := range []string{"mx-a", "mx-b.example.net"} {
			hw := w
			hw.Host = host
			if s := summary(t, b, hw); got[host] != s.Deliveries || got[host] == 0 {
				t.Errorf("ReportBy(%+v, host) gives %s %d deliveries; its own summary %d", w, host, got[host], s.Deliveries)
			}
		}
		if w == (store.Window{}) && (got["mx-a"] != 25 || got["mx-b.example.net"] != 30) {
			t.Errorf("ReportBy(all time, host) = %v, want mx-a 25, mx-b.example.net 30", got)
		}
	}
	if err := b.SetHost(ctx, "bad host"); err == nil || !errors.Is(err, store.ErrBadInput) {
		t.Errorf("SetHost(%q): err %v, want one wrapping store.ErrBadInput", "bad host", err)
	}
}

// oneFollowerPerHostAndSource: LockSource refuses a second holder of one
// host and source, and only that.
func oneFollowerPerHostAndSource(t T, b Backend) {
	ctx := context.Background()
	const src = "file:/var/log/mail.log"
	lock := func(host, source string) func() {
		t.Helper()
		release, err := b.LockSource(ctx, host, source)
		if err != nil {
			t.Fatalf("LockSource(%s, %s): %v", host, source, err)
		}
		return release
	}
	r1 := lock("mx-a", src)
	if release, err := b.LockSource(ctx, "mx-a", src); !errors.Is(err, store.ErrSourceLocked) {
		if err == nil {
			release()
		}
		t.Errorf("second LockSource(mx-a, %s): err %v, want one wrapping store.ErrSourceLocked", src, err)
	}
	r2 := lock("mx-b", src)
	r3 := lock("mx-a", "journal")
	r1()
	r1 = lock("mx-a", src) // given back
	for _, r := range []func(){r1, r2, r3} {
		r()
	}
}

// failedCommit: a commit that fails or is cancelled leaves neither rows
// nor checkpoint, so the follower retries the whole batch.
func failedCommit(t T, b Backend) {
	const src = "file:/var/log/mail.log"
	ds := series("fail", 12)
	commit(t, b, src, ds[:4], []byte("ck1"), 4)

	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n, err := b.CommitBatch(cctx, src, ds[4:8], []byte("ck-cancelled")); err == nil {
		t.Errorf("CommitBatch with a cancelled context: no error (added %d)", n)
	}
	bad := append(slices.Clone(ds[4:8]), newDelivery("fail-bad", day0(), "example.com", "lost", nil, false))
	if n, err := b.CommitBatch(context.Background(), src, bad, []byte("ck-bad")); err == nil || !errors.Is(err, store.ErrBadInput) {
		t.Errorf("CommitBatch with a delivery of status %q: added %d, err %v; want an error wrapping store.ErrBadInput", "lost", n, err)
	}
	if ck := checkpoint(t, b, src); string(ck) != "ck1" {
		t.Errorf("checkpoint after failed commits = %q, want ck1", ck)
	}
	if n := count(t, b, store.Filter{}); n != 4 {
		t.Errorf("rows after failed commits: %d, want 4", n)
	}
	if s := summary(t, b, store.Window{}); s.Deliveries != 4 {
		t.Errorf("summary after failed commits: %d deliveries, want 4", s.Deliveries)
	}
	// The retry stores all of the batch: the failed attempts kept no key.
	commit(t, b, src, ds[4:8], []byte("ck2"), 4)
	if ck := checkpoint(t, b, src); string(ck) != "ck2" {
		t.Errorf("checkpoint = %q, want ck2", ck)
	}
}

// matches is the domain filter's meaning (store.Filter).
func matches(filter, domain string) bool {
	switch {
	case filter == "":
		return true
	case strings.HasPrefix(filter, "*."):
		return domain == filter[2:] || strings.HasSuffix(domain, filter[1:])
	case strings.HasPrefix(filter, "."):
		return strings.HasSuffix(domain, filter)
	}
	return domain == filter
}

// dataset is four days of mixed deliveries: several domains (one ends in
// "example.com" without being under it), every status, TLS on, off and
// unknown, and internal hops.
func dataset() []delivery.Delivery {
	domains := []string{"example.com", "a.example.com", "b.a.example.com", "example.net", "notexample.com"}
	statuses := []delivery.Status{delivery.Sent, delivery.Sent, delivery.Sent, delivery.Deferred, delivery.Bounced, delivery.Expired}
	tls := []*bool{ptr(true), ptr(false), nil, ptr(true)}
	var ds []delivery.Delivery
	for i := 0; i < 4*24*6; i++ { // one every 10 minutes, with a jitter
		at := day0().Add(time.Duration(i)*10*time.Minute + time.Duration(i%7)*time.Minute + time.Duration(i%13)*time.Second)
		ds = append(ds, newDelivery(fmt.Sprintf("win-%d", i), at, domains[i%len(domains)], statuses[i%len(statuses)],
			tls[i%len(tls)], i%11 == 0))
	}
	return ds
}

// expected counts ds in w, as Summary must.
func expected(ds []delivery.Delivery, w store.Window) store.Summary {
	var s store.Summary
	for _, d := range ds {
		if d.Time.Before(w.Since) || !w.Until.IsZero() && !d.Time.Before(w.Until) || !matches(w.Domain, d.Domain) {
			continue
		}
		if d.Internal {
			s.Internal++
			if !w.IncludeInternal {
				continue
			}
		}
		switch d.Status {
		case delivery.Sent:
			s.Deliveries++
			switch {
			case d.TLS == nil:
				s.Unknown++
			case *d.TLS:
				s.Encrypted++
			default:
				s.Plaintext++
			}
		case delivery.Deferred:
			s.Deferred++
		case delivery.Bounced:
			s.Bounced++
		case delivery.Expired:
			s.Expired++
		}
	}
	return s
}

// counts is the part of a Summary the dataset determines.
func counts(s store.Summary) [8]int64 {
	return [8]int64{s.Deliveries, s.Encrypted, s.Plaintext, s.Unknown, s.Deferred, s.Bounced, s.Expired, s.Internal}
}

const countNames = "deliveries, encrypted, plaintext, unknown, deferred, bounced, expired, internal"

func commitAll(t T, b Backend, ds []delivery.Delivery) {
	t.Helper()
	for i := 0; i < len(ds); i += 100 {
		part := ds[i:min(i+100, len(ds))]
		commit(t, b, "file:/var/log/mail.log", part, []byte(fmt.Sprint(i)), len(part))
	}
}

// windows: a report window answered from rollups counts exactly the raw
// rows in it, with partial first and last hours and days, every kind of
// domain filter, and with internal hops left out or included.
func windows(t T, b Backend) {
	ctx := context.Background()
	ds := dataset()
	commitAll(t, b, ds)
	d := day0()
	wins := []struct {
		name         string
		since, until time.Time
	}{
		{"unbounded", time.Time{}, time.Time{}},
		{"partial first and last day", d.Add(13*time.Hour + 37*time.Minute + 5*time.Second), d.Add(3*24*time.Hour + 9*time.Hour + 12*time.Minute)},
		{"whole day", d.Add(24 * time.Hour), d.Add(48 * time.Hour)},
		{"within one hour", d.Add(30*time.Hour + 10*time.Minute), d.Add(30*time.Hour + 50*time.Minute)},
		{"from a time on", d.Add(50*time.Hour + 1*time.Second), time.Time{}},
		{"until a time", time.Time{}, d.Add(47*time.Hour + 59*time.Minute)},
		{"empty", d.Add(time.Hour), d.Add(time.Hour)},
	}
	for _, wn := range wins {
		for _, dom := range []string{"", "example.com", "*.example.com", ".example.com", "example.net"} {
			for _, incl := range []bool{false, true} {
				w := store.Window{Since: wn.since, Until: wn.until, Domain: dom, IncludeInternal: incl}
				what := fmt.Sprintf("%s, domain %q, include internal %v", wn.name, dom, incl)
				got, want := summary(t, b, w), expected(ds, w)
				if counts(got) != counts(want) {
					t.Errorf("%s: summary (%s) = %v, want %v", what, countNames, counts(got), counts(want))
				}
				// The raw rows say the same.
				raw := 0
				err := b.Deliveries(ctx, store.Filter{Since: w.Since, Until: w.Until, Domain: dom}, func(d delivery.Delivery) error {
					if d.Status == delivery.Sent && (incl || !d.Internal) {
						raw++
					}
					return nil
				})
				if err != nil {
					t.Fatalf("%s: Deliveries: %v", what, err)
				}
				if int64(raw) != got.Deliveries {
					t.Errorf("%s: summary counts %d sent deliveries, the raw rows %d", what, got.Deliveries, raw)
				}
				// Grouped reports add up to the summary.
				for _, by := range []string{"day", "hour", "domain", "status"} {
					rows, err := b.ReportBy(ctx, w, by, 0)
					if err != nil {
						t.Fatalf("%s: ReportBy(%s): %v", what, by, err)
					}
					var n int64
					for _, r := range rows {
						if by != "status" || r.Key == string(delivery.Sent) {
							n += r.Deliveries
						}
					}
					if n != want.Deliveries {
						t.Errorf("%s: ReportBy(%s) adds up to %d sent deliveries, want %d", what, by, n, want.Deliveries)
					}
				}
			}
		}
	}
	if _, err := b.Summary(ctx, store.Window{Domain: "exa mple.com"}); !errors.Is(err, store.ErrBadInput) {
		t.Errorf("Summary with domain filter %q: err %v, want one wrapping store.ErrBadInput", "exa mple.com", err)
	}
}

// overrideHistory: every change is in the history, newest first, with who
// made it and when; the override keeps its expiry.
func overrideHistory(t T, b Backend) {
	ctx := context.Background()
	const key = "example.com"
	before := time.Now().Truncate(time.Second)
	expires := time.Now().Add(48 * time.Hour).Truncate(time.Second).UTC()
	steps := []struct {
		actor string
		do    func() error
	}{
		{"alice", func() error { return b.SetOverride(ctx, store.Override{Key: key, Policy: "encrypt"}, "alice") }},
		{"bob", func() error {
			return b.SetOverride(ctx, store.Override{Key: key, Policy: "secure match=.example.com", Note: "ticket 7"}, "bob")
		}},
		{"carol", func() error { return b.RemoveOverride(ctx, key, "carol") }},
		{"dave", func() error {
			return b.SetOverride(ctx, store.Override{Key: key, Policy: "encrypt", Expires: expires}, "dave")
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("change by %s: %v", s.actor, err)
		}
	}
	// Setting it to what it is changes nothing and records nothing.
	if err := b.SetOverride(ctx, store.Override{Key: key, Policy: "encrypt", Expires: expires}, "erin"); err != nil {
		t.Fatalf("SetOverride: %v", err)
	}
	if err := b.SetOverride(ctx, store.Override{Key: "[mx.example.net]:25", Policy: "may"}, "frank"); err != nil {
		t.Fatalf("SetOverride: %v", err)
	}
	after := time.Now().Add(time.Second)
	hist, err := b.History(ctx, key)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	want := []store.Change{
		{Key: key, Old: "", New: "encrypt", Actor: "dave"},
		{Key: key, Old: "secure match=.example.com", New: "", Actor: "carol"},
		{Key: key, Old: "encrypt", New: "secure match=.example.com", Actor: "bob", Note: "ticket 7"},
		{Key: key, Old: "", New: "encrypt", Actor: "alice"},
	}
	if len(hist) != len(want) {
		t.Fatalf("History(%q) has %d changes, want %d: %+v", key, len(hist), len(want), hist)
	}
	for i, c := range hist {
		if c.At.Before(before) || c.At.After(after) {
			t.Errorf("change %d made at %v, want between %v and %v", i, c.At, before, after)
		}
		c.At = time.Time{}
		if c != want[i] {
			t.Errorf("change %d (newest first) = %+v, want %+v", i, c, want[i])
		}
	}
	if all, err := b.History(ctx, ""); err != nil || len(all) != len(want)+1 || all[0].Key != "[mx.example.net]:25" {
		t.Errorf("History of all keys: %d changes (err %v), want %d, newest first", len(all), err, len(want)+1)
	}
	ovs, err := b.Overrides(ctx)
	if err != nil {
		t.Fatalf("Overrides: %v", err)
	}
	var got *store.Override
	for i := range ovs {
		if ovs[i].Key == key {
			got = &ovs[i]
		}
	}
	switch {
	case len(ovs) != 2 || got == nil:
		t.Errorf("Overrides = %+v, want two, one for %s", ovs, key)
	case got.Policy != "encrypt" || !got.Expires.Equal(expires):
		t.Errorf("override %s = %q expiring %v, want encrypt expiring %v", key, got.Policy, got.Expires, expires)
	case got.Created.Before(before) || got.Updated.Before(got.Created) || got.Updated.After(after):
		t.Errorf("override %s created %v, updated %v: want times of this test, updated not before created", key, got.Created, got.Updated)
	}
	pol := map[string]time.Time{}
	if err := b.OverridePolicies(ctx, func(k, p string, exp time.Time) { pol[k+" "+p] = exp }); err != nil {
		t.Fatalf("OverridePolicies: %v", err)
	}
	if exp, ok := pol[key+" encrypt"]; len(pol) != 2 || !ok || !exp.Equal(expires) {
		t.Errorf("OverridePolicies = %v, want %s encrypt expiring %v and one more", pol, key, expires)
	}
	some := map[string]string{}
	if err := b.OverridesFor(ctx, []string{"absent.example", key}, func(k, p string, exp time.Time) {
		some[k] = p
		if !exp.Equal(expires) {
			t.Errorf("OverridesFor: %s expires %v, want %v", k, exp, expires)
		}
	}); err != nil {
		t.Fatalf("OverridesFor: %v", err)
	}
	if len(some) != 1 || some[key] != "encrypt" {
		t.Errorf("OverridesFor(absent.example, %s) = %v, want %s encrypt alone", key, some, key)
	}
	if err := b.RemoveOverride(ctx, "absent.example", "carol"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RemoveOverride of a missing key: err %v, want one wrapping store.ErrNotFound", err)
	}
	// An import is all or nothing.
	bad := []store.Override{{Key: "new.example", Policy: "encrypt"}, {Key: "new.example", Policy: "secure"}}
	if _, err := b.ImportOverrides(ctx, bad, "gina"); !errors.Is(err, store.ErrBadInput) {
		t.Errorf("import with a key twice: err %v, want one wrapping store.ErrBadInput", err)
	}
	if ovs, _ := b.Overrides(ctx); len(ovs) != 2 {
		t.Errorf("a failed import stored something: %d overrides, want 2", len(ovs))
	}
	// One validating write path: a value Postfix would defer mail for, or
	// a key not in normal form, is refused by every writer.
	for _, o := range []store.Override{
		{Key: "bad.example", Policy: "encrypt match=hostname"}, // match only with fingerprint, verify, secure
		{Key: "bad.example", Policy: "encrpyt"},
		{Key: "Bad.Example", Policy: "encrypt"},
		{Key: "bad..example", Policy: "encrypt"},
	} {
		if err := b.SetOverride(ctx, o, "hal"); !errors.Is(err, store.ErrBadInput) {
			t.Errorf("SetOverride(%q, %q): err %v, want one wrapping store.ErrBadInput", o.Key, o.Policy, err)
		}
		if _, err := b.ImportOverrides(ctx, []store.Override{{Key: "fine.example", Policy: "encrypt"}, o}, "hal"); !errors.Is(err, store.ErrBadInput) {
			t.Errorf("ImportOverrides(%q, %q): err %v, want one wrapping store.ErrBadInput", o.Key, o.Policy, err)
		}
	}
	if ovs, _ := b.Overrides(ctx); len(ovs) != 2 {
		t.Errorf("refused overrides stored something: %d overrides, want 2", len(ovs))
	}
	n, err := b.ImportOverrides(ctx, []store.Override{{Key: "new.example", Policy: "encrypt"}, {Key: key, Policy: "encrypt", Expires: expires}}, "gina")
	if err != nil || n != 1 {
		t.Errorf("import of one new and one unchanged override: %d changed (err %v), want 1", n, err)
	}
	if h, _ := b.History(ctx, "new.example"); len(h) != 1 || h[0].Actor != "gina" || h[0].New != "encrypt" {
		t.Errorf("history of an imported override = %+v, want one creation by gina", h)
	}
}

// changeNotification: the overrides version moves on every change to the
// overrides, and on nothing else, so the daemon reloads exactly when it
// must.
func changeNotification(t T, b Backend) {
	ctx := context.Background()
	version := func() uint64 {
		t.Helper()
		v, err := b.OverridesVersion(ctx)
		if err != nil {
			t.Fatalf("OverridesVersion: %v", err)
		}
		return v
	}
	last := version()
	moved := func(what string, want bool) {
		t.Helper()
		v := version()
		if (v != last) != want {
			t.Errorf("%s: version %d -> %d; want it to move: %v", what, last, v, want)
		}
		last = v
	}
	reads := func(what string) {
		t.Helper()
		_, _ = b.Overrides(ctx)
		_, _ = b.History(ctx, "")
		_ = b.OverridePolicies(ctx, func(string, string, time.Time) {})
		_ = b.OverridesFor(ctx, []string{"example.com"}, func(string, string, time.Time) {})
		_, _ = b.Summary(ctx, store.Window{})
		moved("reads after "+what, false)
	}
	reads("open")
	steps := []struct {
		what string
		do   func() error
	}{
		{"set", func() error { return b.SetOverride(ctx, store.Override{Key: "example.com", Policy: "encrypt"}, "a") }},
		{"change", func() error { return b.SetOverride(ctx, store.Override{Key: "example.com", Policy: "secure"}, "a") }},
		{"change the note", func() error {
			return b.SetOverride(ctx, store.Override{Key: "example.com", Policy: "secure", Note: "n"}, "a")
		}},
		{"change the expiry", func() error {
			return b.SetOverride(ctx, store.Override{Key: "example.com", Policy: "secure", Note: "n", Expires: time.Now().Add(time.Hour)}, "a")
		}},
		{"remove", func() error { return b.RemoveOverride(ctx, "example.com", "a") }},
		{"set again", func() error { return b.SetOverride(ctx, store.Override{Key: "example.com", Policy: "encrypt"}, "a") }},
		{"import", func() error {
			_, err := b.ImportOverrides(ctx, []store.Override{{Key: ".example.net", Policy: "verify"}}, "a")
			return err
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		moved(s.what, true)
		reads(s.what)
	}
	// Deliveries are not overrides: the follower's commits must not make
	// the daemon reload.
	commit(t, b, "journal", series("notify", 3), []byte("c"), 3)
	moved("a delivery commit", false)
	if err := b.RemoveOverride(ctx, "absent.example", "a"); err == nil {
		t.Errorf("RemoveOverride of a missing key: no error")
	}
	moved("a failed remove", false)
}

// pruneKeepsRollups: pruning deletes the raw rows of whole days before the
// horizon and keeps every report total; deliveries before the horizon are
// not stored again.
func pruneKeepsRollups(t T, b Backend) {
	ctx := context.Background()
	ds := dataset()
	commitAll(t, b, ds)
	d := day0()
	whole := []store.Window{{}, {Domain: "*.example.com"}, {Since: d.Add(24 * time.Hour), Until: d.Add(72 * time.Hour)},
		{Since: d, Until: d.Add(48 * time.Hour), Domain: "example.net", IncludeInternal: true}}
	var sums []store.Summary
	var byDay [][]store.Row
	for _, w := range whole {
		sums = append(sums, summary(t, b, w))
		rows, err := b.ReportBy(ctx, w, "day", 0)
		if err != nil {
			t.Fatalf("ReportBy(day): %v", err)
		}
		byDay = append(byDay, rows)
	}
	horizon := d.Add(2 * 24 * time.Hour)
	before := count(t, b, store.Filter{Until: horizon})
	res, err := b.Prune(ctx, horizon.Add(5*time.Hour+3*time.Minute))
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if !res.Horizon.Equal(horizon) || res.Deleted != int64(before) {
		t.Errorf("Prune: horizon %v, deleted %d; want the midnight %v and %d", res.Horizon, res.Deleted, horizon, before)
	}
	if h, err := b.Horizon(ctx); err != nil || !h.Equal(horizon) {
		t.Errorf("Horizon = %v (err %v), want %v", h, err, horizon)
	}
	if n := count(t, b, store.Filter{Until: horizon}); n != 0 {
		t.Errorf("%d raw rows before the horizon after Prune, want 0", n)
	}
	if n, all := count(t, b, store.Filter{}), len(ds)-before; n != all {
		t.Errorf("%d raw rows after Prune, want the %d from the horizon on", n, all)
	}
	check := func(when string) {
		t.Helper()
		for i, w := range whole {
			if got := summary(t, b, w); !reflect.DeepEqual(got, sums[i]) {
				t.Errorf("%s: Summary(%+v) = %+v, want as before pruning: %+v", when, w, got, sums[i])
			}
			rows, err := b.ReportBy(ctx, w, "day", 0)
			if err != nil {
				t.Fatalf("ReportBy(day): %v", err)
			}
			if !reflect.DeepEqual(rows, byDay[i]) {
				t.Errorf("%s: ReportBy(%+v, day) = %+v, want as before pruning: %+v", when, w, rows, byDay[i])
			}
		}
	}
	check("after Prune")
	// A log read again from the start must count neither the pruned days
	// nor the days kept twice.
	n, err := b.CommitBatch(ctx, "file:/var/log/mail.log", ds[:400], []byte("again"))
	if err != nil {
		t.Fatalf("CommitBatch: %v", err)
	}
	if n != 0 {
		t.Errorf("re-committing deliveries already stored (some pruned) added %d, want 0", n)
	}
	check("after re-reading the log")
	// The horizon never moves back.
	if res, err := b.Prune(ctx, d); err != nil || !res.Horizon.Equal(horizon) || res.Deleted != 0 {
		t.Errorf("Prune to an earlier day: horizon %v, deleted %d, err %v; want %v, 0, nil", res.Horizon, res.Deleted, err, horizon)
	}
	if _, err := b.Prune(ctx, time.Now().Add(48*time.Hour)); !errors.Is(err, store.ErrBadInput) {
		t.Errorf("Prune before a future time: err %v, want one wrapping store.ErrBadInput", err)
	}
}

// safe is what a store keeps of a text field: each run of invalid UTF-8
// and each NUL byte becomes U+FFFD, the same on every engine (PostgreSQL
// refuses both in text, and a batch it refused would be retried forever).
func safe(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// hostileText: deliveries whose text fields hold NUL bytes, invalid UTF-8,
// non-ASCII domains and quotes commit (once), and read back the same on
// every engine, with U+FFFD in place of what text cannot hold; reports
// find the non-ASCII domains, from the rollups and the raw rows alike, and
// a domain filter finds them under their parent. Notes and actors of
// overrides, and a checkpoint source, get the same treatment.
func hostileText(t T, b Backend) {
	ctx := context.Background()
	const src = "file:/var/log/ma\xffil\x00.log"
	domains := []string{"bücher.example", "mx.bücher.example", "例え.jp", "bad\xffdomain.example", "nul\x00.example", "example.com"}
	var ds []delivery.Delivery
	for i := 0; i < 3*24; i++ { // three days, one an hour
		d := newDelivery(fmt.Sprintf("hostile-%d", i), day0().Add(time.Duration(i)*time.Hour+7*time.Minute), domains[i%len(domains)],
			[]delivery.Status{delivery.Sent, delivery.Sent, delivery.Deferred}[i%3], ptr(i%4 != 0), false)
		d.Recipient = `"o'brien \"x\"\\"\x00@` + d.Domain
		d.Relay = "mx\x00." + d.Domain + "[192.0.2.7]:25"
		d.Reason = "250 2.0.0 ok \xc3 '; DROP TABLE deliveries; --"
		d.QueueID = "4Q\x00" + fmt.Sprint(i)
		d.DSN = "2.0.0\xff"
		if *d.TLS {
			d.TLSProtocol, d.TLSCipher = "TLSv1.3\xfe", "AES\x00GCM"
		}
		d.TLSVerify, d.TLSFeature = "num=62:hostname mismatch \xe2\x80", "may:\x00none"
		ds = append(ds, d)
	}
	for i := 0; i < len(ds); i += 25 {
		part := ds[i:min(i+25, len(ds))]
		commit(t, b, src, part, []byte(fmt.Sprintf("ck-%d", i)), len(part))
	}
	commit(t, b, src, ds[:25], []byte("ck-again"), 0) // stored once
	if ck := checkpoint(t, b, src); string(ck) != "ck-again" {
		t.Errorf("checkpoint of %q = %q, want ck-again", src, ck)
	}

	// Read back: every field, made safe.
	byKey := map[string]delivery.Delivery{}
	for _, d := range ds {
		byKey[d.Key] = d
	}
	n := 0
	err := b.Deliveries(ctx, store.Filter{}, func(got delivery.Delivery) error {
		n++
		d, ok := byKey[got.Key]
		if !ok {
			t.Errorf("Deliveries: key %s was not committed", got.Key)
			return nil
		}
		for _, f := range []struct{ name, got, want string }{
			{"domain", got.Domain, safe(d.Domain)},
			{"recipient", got.Recipient, safe(d.Recipient)},
			{"relay", got.Relay, safe(d.Relay)},
			{"reason", got.Reason, safe(d.Reason)},
			{"queue id", got.QueueID, safe(d.QueueID)},
			{"dsn", got.DSN, safe(d.DSN)},
			{"tls protocol", got.TLSProtocol, safe(d.TLSProtocol)},
			{"tls cipher", got.TLSCipher, safe(d.TLSCipher)},
			{"tls verify", got.TLSVerify, safe(d.TLSVerify)},
			{"tls feature", got.TLSFeature, safe(d.TLSFeature)},
		} {
			if f.got != f.want {
				t.Errorf("delivery %s: %s = %q, want %q", d.Key[:8], f.name, f.got, f.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Deliveries: %v", err)
	}
	if n != len(ds) {
		t.Errorf("Deliveries: %d rows, want %d", n, len(ds))
	}

	// Reports by domain, over whole days (rollups) and partial ones (raw
	// rows): one row per domain, under its safe spelling.
	d := day0()
	for _, w := range []store.Window{
		{},
		{Since: d.Add(5*time.Hour + 30*time.Minute), Until: d.Add(2*24*time.Hour + 17*time.Hour)},
		{Since: d.Add(24 * time.Hour), Until: d.Add(48 * time.Hour)},
	} {
		want := map[string]int64{}
		for _, x := range ds {
			if x.Status == delivery.Sent && !x.Time.Before(w.Since) && (w.Until.IsZero() || x.Time.Before(w.Until)) {
				want[safe(x.Domain)]++
			}
		}
		rows, err := b.ReportBy(ctx, w, "domain", 0)
		if err != nil {
			t.Fatalf("ReportBy(domain, %v to %v): %v", w.Since, w.Until, err)
		}
		got := map[string]int64{}
		for _, r := range rows {
			if _, dup := got[r.Key]; dup {
				t.Errorf("ReportBy(domain, %v to %v): domain %q twice", w.Since, w.Until, r.Key)
			}
			got[r.Key] += r.Deliveries
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ReportBy(domain, %v to %v) = %v, want %v", w.Since, w.Until, got, want)
		}
		// A parent's filter finds the non-ASCII subdomains.
		for _, f := range []string{"*.example", ".example", "example.com"} {
			fw := w
			fw.Domain = f
			var sent int64
			for k, n := range want {
				if matches(f, k) {
					sent += n
				}
			}
			if s := summary(t, b, fw); s.Deliveries != sent {
				t.Errorf("Summary(domain %q, %v to %v) = %d sent, want %d", f, w.Since, w.Until, s.Deliveries, sent)
			}
		}
	}

	// Override notes and actors.
	const note, actor = "from \xffthe ticket", "ad\x00min\xfe"
	if err := b.SetOverride(ctx, store.Override{Key: "example.com", Policy: "encrypt", Note: note}, actor); err != nil {
		t.Fatalf("SetOverride with note %q, actor %q: %v", note, actor, err)
	}
	ovs, err := b.Overrides(ctx)
	if err != nil {
		t.Fatalf("Overrides: %v", err)
	}
	if len(ovs) != 1 || ovs[0].Note != safe(note) {
		t.Errorf("Overrides = %+v, want one with note %q", ovs, safe(note))
	}
	hist, err := b.History(ctx, "example.com")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if len(hist) != 1 || hist[0].Actor != safe(actor) || hist[0].Note != safe(note) {
		t.Errorf("History = %+v, want one change by %q with note %q", hist, safe(actor), safe(note))
	}
	// Setting it again to the same is no change.
	if err := b.SetOverride(ctx, store.Override{Key: "example.com", Policy: "encrypt", Note: note}, actor); err != nil {
		t.Fatalf("SetOverride again: %v", err)
	}
	if hist, err := b.History(ctx, "example.com"); err != nil || len(hist) != 1 {
		t.Errorf("History after setting the same override again: %d changes, %v; want 1", len(hist), err)
	}
	if err := b.SetOverride(ctx, store.Override{Key: "example.com", Policy: "encrypt", Note: "a\x00b"}, actor); !errors.Is(err, store.ErrBadInput) {
		t.Errorf("SetOverride with a NUL in the note: %v, want an error wrapping store.ErrBadInput (control character)", err)
	}
}
