package metrics

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/policyd"
)

// TestLookupsCounted: after N replies of each kind, each counter is N,
// and the histogram has seen every reply.
func TestLookupsCounted(t *testing.T) {
	m := New(Options{Daemon: true})
	kinds := []struct {
		p   policyd.Proto
		o   policyd.Origin
		out policyd.Outcome
		n   int
	}{
		{policyd.ProtoSocketmap, policyd.OriginOverride, policyd.OutcomeOK, 3},
		{policyd.ProtoSocketmap, policyd.OriginDefault, policyd.OutcomeNotFound, 2},
		{policyd.ProtoSocketmap, policyd.OriginNone, policyd.OutcomePerm, 1},
		{policyd.ProtoTCPTable, policyd.OriginNone, policyd.OutcomeTemp, 4},
		{policyd.ProtoTCPTable, policyd.OriginDefault, policyd.OutcomeOK, 5},
	}
	total := 0
	for _, k := range kinds {
		for range k.n {
			m.Lookups.ObserveLookup(k.p, k.o, k.out, 3*time.Microsecond)
		}
		total += k.n
	}
	m.Lookups.ObserveLookup(7, 9, 9, time.Second) // out of range: ignored, no panic
	for _, k := range kinds {
		got := value(m.Lookups.counts[k.p][k.o][k.out])
		if got != float64(k.n) {
			t.Errorf("lookups_total{proto=%s,source=%s,result=%s} = %v, want %d", k.p, k.o, k.out, got, k.n)
		}
	}
	n, err := seriesOf(m.Registry(), "mailtls_lookups_total")
	if err != nil || n != numProtos*int(policyd.NumOrigins)*int(policyd.NumOutcomes) {
		t.Errorf("lookups_total has %d series (%v), want every combination from the start", n, err)
	}
	fams, _ := m.Registry().Gather()
	var seen uint64
	for _, f := range fams {
		if f.GetName() == "mailtls_lookup_duration_seconds" {
			for _, s := range f.Metric {
				seen += s.Histogram.GetSampleCount()
			}
		}
	}
	if seen != uint64(total) {
		t.Errorf("latency histogram saw %d lookups, want %d", seen, total)
	}
}

// TestObserveLookupAllocs: the lookup path allocates nothing.
func TestObserveLookupAllocs(t *testing.T) {
	m := New(Options{Daemon: true})
	var obs policyd.Observer = m.Lookups
	if a := testing.AllocsPerRun(1000, func() {
		obs.ObserveLookup(policyd.ProtoTCPTable, policyd.OriginOverride, policyd.OutcomeOK, 2*time.Microsecond)
	}); a != 0 {
		t.Errorf("ObserveLookup: %v allocations, want 0", a)
	}
}

func BenchmarkObserveLookup(b *testing.B) {
	m := New(Options{Daemon: true})
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Lookups.ObserveLookup(policyd.ProtoSocketmap, policyd.OriginDefault, policyd.OutcomeOK, 2*time.Microsecond)
		}
	})
}

type fakeSource struct {
	v      uint64
	verErr error
	ovErr  error
	ovs    []policyd.Override
}

func (f *fakeSource) Version(context.Context) (uint64, error) { return f.v, f.verErr }
func (f *fakeSource) Overrides(_ context.Context, add func(policyd.Override)) error {
	if f.ovErr != nil {
		return f.ovErr
	}
	for _, o := range f.ovs {
		add(o)
	}
	return nil
}

// TestPolicyWatch: the snapshot version is the one last loaded, failed
// reloads are counted, and the overrides gauge is the served snapshot's
// size (the last good one after a failure).
func TestPolicyWatch(t *testing.T) {
	m := New(Options{Daemon: true})
	tab := policyd.NewTable("may")
	fs := &fakeSource{v: 7, ovs: []policyd.Override{{Key: "a.example", Policy: "encrypt"}, {Key: "b.example", Policy: "may"}}}
	src := m.Policy.Watch(tab, fs)
	ctx := context.Background()
	if _, err := tab.Reload(ctx, src); err != nil {
		t.Fatal(err)
	}
	fs.v, fs.ovErr = 8, errors.New("database is locked")
	if _, err := tab.Reload(ctx, src); err == nil {
		t.Fatal("reload did not fail")
	}
	fs.verErr = errors.New("unreadable")
	tab.Reload(ctx, src)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	tab.Reload(cctx, src) // shutting down: not a failure
	if v := value(m.Policy.version); v != 7 {
		t.Errorf("snapshot version = %v, want 7 (the last one loaded)", v)
	}
	if f := value(m.Policy.failures); f != 2 {
		t.Errorf("reload failures = %v, want 2", f)
	}
	if n, err := seriesOf(m.Registry(), "mailtls_overrides"); err != nil || n != 1 {
		t.Fatalf("mailtls_overrides: %d series, %v", n, err)
	}
	fams, _ := m.Registry().Gather()
	for _, f := range fams {
		if f.GetName() == "mailtls_overrides" {
			if v := f.Metric[0].Gauge.GetValue(); v != 2 {
				t.Errorf("mailtls_overrides = %v, want 2", v)
			}
		}
	}
}

func boolp(b bool) *bool { return &b }

// TestDeliveriesDomains: with a domain label, the top domains get their
// own series, the rest "other"; domains leaving the top set lose theirs.
func TestDeliveriesDomains(t *testing.T) {
	m := New(Options{Follower: true, Domains: 2})
	d := m.Deliveries
	d.SetDomains([]string{"a.example", "b.example", "c.example"}) // capped at 2
	for _, dom := range []string{"a.example", "a.example", "b.example", "c.example", "d.example"} {
		d.Add(&delivery.Delivery{Status: "sent", TLS: boolp(true), Domain: dom})
	}
	d.Add(&delivery.Delivery{Status: "sent", TLS: boolp(true), Domain: "a.example", Internal: true}) // not counted
	get := func(dom string) float64 {
		return value(d.total.WithLabelValues(dom, "sent", "encrypted"))
	}
	if a, b, o := get("a.example"), get("b.example"), get("other"); a != 2 || b != 1 || o != 2 {
		t.Errorf("a=%v b=%v other=%v, want 2 1 2", a, b, o)
	}
	d.SetDomains([]string{"b.example"})
	if n, _ := seriesOf(m.Registry(), "mailtls_deliveries_total"); n != 13 {
		// b.example sent/encrypted plus the 12 pre-made "other" series
		t.Errorf("%d series after a.example left the top set, want 13", n)
	}
}

// TestForcedBy: plaintext to a destination whose policy requires TLS at
// delivery time, by domain (exact, wildcard, default) or bracketed relay.
func TestForcedBy(t *testing.T) {
	now := time.Now()
	tab := policyd.NewTable("may")
	tab.Store(policyd.NewSnapshot([]policyd.Override{
		{Key: "forced.example", Policy: "encrypt"},
		{Key: ".corp.example", Policy: "verify match=hostname"},
		{Key: "dane.example", Policy: "dane"},
		{Key: "[smarthost.example]:587", Policy: "secure"},
		{Key: "gone.example", Policy: "encrypt", Expires: now.Add(-time.Hour)},
	}, "may"))
	forced := ForcedBy(tab)
	for _, tc := range []struct {
		domain, relay string
		at            time.Time
		want          bool
	}{
		{"forced.example", "mx.forced.example[192.0.2.1]:25", now, true},
		{"a.corp.example", "none", now, true},
		{"corp.example", "mx.corp.example[192.0.2.1]:25", now, false},
		{"dane.example", "mx.dane.example[192.0.2.1]:25", now, false},
		{"other.example", "smarthost.example[192.0.2.9]:587", now, true},
		{"other.example", "smarthost.example[192.0.2.9]:25", now, false},
		{"gone.example", "mx.gone.example[192.0.2.1]:25", now, false},
		{"gone.example", "mx.gone.example[192.0.2.1]:25", now.Add(-2 * time.Hour), true},
	} {
		if got := forced(&delivery.Delivery{Domain: tc.domain, Relay: tc.relay, Time: tc.at}); got != tc.want {
			t.Errorf("forced(%s via %s at %v) = %v, want %v", tc.domain, tc.relay, tc.at, got, tc.want)
		}
	}
	tab.Store(policyd.NewSnapshot(nil, "encrypt"))
	if !forced(&delivery.Delivery{Domain: "any.example", Relay: "none", Time: now}) {
		t.Error("default encrypt: not forced")
	}
}

// TestFollowerSkipped counts only the lines skipped since the restored
// checkpoint, and survives a correlator that starts again from zero.
func TestFollowerSkipped(t *testing.T) {
	m := New(Options{Follower: true})
	f := m.Follower
	f.Restored(logparse.Checkpoint{Cursor: "c"}, logparse.Stats{Skipped: 10})
	f.Committed(logparse.Batch{Stats: logparse.Stats{Skipped: 12}}, time.Unix(1000, 0))
	f.Committed(logparse.Batch{Stats: logparse.Stats{Skipped: 12}}, time.Unix(1001, 0))
	f.Committed(logparse.Batch{Stats: logparse.Stats{Skipped: 3}}, time.Unix(1002, 0)) // a new correlator
	if got := value(f.skipped); got != 5 {
		t.Errorf("skipped = %v, want 5", got)
	}
	if got := value(f.lastCommit); got != 1002 {
		t.Errorf("last commit = %v, want 1002", got)
	}
	// A journald checkpoint has no lag.
	if n, _ := seriesOf(m.Registry(), "mailtls_follower_lag_bytes"); n != 0 {
		t.Errorf("lag exported for journald")
	}
}

// value is the value of a collector with one series.
func value(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// seriesOf counts the series of one family in a scrape of reg.
func seriesOf(reg *prometheus.Registry, name string) (int, error) {
	fams, err := reg.Gather()
	for _, f := range fams {
		if f.GetName() == name {
			return len(f.Metric), err
		}
	}
	return 0, err
}
