package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtls/mailtls/logparse"
)

// Follower follows the log follower: how far behind the log it is, when
// it last committed, and the lines it could not use.
type Follower struct {
	lastCommit prometheus.Gauge
	skipped    prometheus.Counter
	lagDesc    *prometheus.Desc

	mu   sync.Mutex
	cp   logparse.Checkpoint // the last committed (or restored) checkpoint
	have bool
	base logparse.Stats // the correlator's cumulative stats at the last commit
}

// Reasons of mailtls_follower_lines_skipped_total. The correlator's
// Stats.Skipped counts lines without a parseable header, and lines over the
// length limit, which the follower feeds as empty lines.
const skipUnparseable = "unparseable"

func newFollower(reg prometheus.Registerer) *Follower {
	f := &Follower{
		lastCommit: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "follower_last_commit_timestamp_seconds",
			Help:      "Unix time of the follower's last commit of deliveries and log position (0: none since start).",
		}),
		lagDesc: prometheus.NewDesc(namespace+"_follower_lag_bytes",
			"Bytes of the followed log file past the last committed position (absent for journald, or while the file was rotated since).", nil, nil),
	}
	skipped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace,
		Name:      "follower_lines_skipped_total",
		Help:      "Log lines the follower read but could not use, by reason (unparseable: no recognisable header, or longer than the line limit).",
	}, []string{"reason"})
	f.skipped = skipped.WithLabelValues(skipUnparseable)
	reg.MustRegister(f.lastCommit, skipped, f)
	return f
}

// Restored records the checkpoint a follower run starts from, so that lag
// is known before the first commit and only lines skipped from now on are
// counted. stats are the correlator's, restored with the checkpoint.
func (f *Follower) Restored(cp logparse.Checkpoint, stats logparse.Stats) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cp, f.have, f.base = cp, true, stats
}

// Committed records a successful commit of b at time at.
func (f *Follower) Committed(b logparse.Batch, at time.Time) {
	f.mu.Lock()
	d := b.Stats.Skipped - f.base.Skipped
	if d < 0 { // a new correlator (the checkpoint was of another log)
		d = b.Stats.Skipped
	}
	f.cp, f.have, f.base = b.Checkpoint, true, b.Stats
	f.mu.Unlock()
	if d > 0 {
		f.skipped.Add(float64(d))
	}
	f.lastCommit.Set(float64(at.UnixNano()) / 1e9)
}

// Describe implements prometheus.Collector for the lag gauge.
func (f *Follower) Describe(ch chan<- *prometheus.Desc) { ch <- f.lagDesc }

// Collect implements prometheus.Collector: the lag is measured at scrape
// time (one stat of the log file).
func (f *Follower) Collect(ch chan<- prometheus.Metric) {
	f.mu.Lock()
	cp, have := f.cp, f.have
	f.mu.Unlock()
	if !have {
		return
	}
	n, ok, err := cp.Unread()
	if err != nil || !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(f.lagDesc, prometheus.GaugeValue, float64(n))
}
