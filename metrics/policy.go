package metrics

import (
	"context"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtls/mailtls/policyd"
)

// Policy follows the policy snapshot: its source version, its size, and
// failed reloads.
type Policy struct {
	version  prometheus.Gauge
	failures prometheus.Counter
	table    atomic.Pointer[policyd.Table]
}

func newPolicy(reg prometheus.Registerer) *Policy {
	p := &Policy{
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "policy_snapshot_version",
			Help:      "Source version (store change counter) of the policy snapshot being served.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "policy_reload_failures_total",
			Help:      "Failed attempts to reload the overrides; the last good snapshot stays in use.",
		}),
	}
	overrides := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "overrides",
		Help:      "Overrides in the policy snapshot being served (expired ones included until the next reload).",
	}, func() float64 {
		if t := p.table.Load(); t != nil {
			return float64(t.Load().Len())
		}
		return 0
	})
	reg.MustRegister(p.version, p.failures, overrides)
	return p
}

// Watch makes mailtls_overrides report the size of t's snapshot, and
// returns src wrapped so that the snapshot version and reload failures are
// counted: give the result to t.Reload and t.Watch instead of src.
func (p *Policy) Watch(t *policyd.Table, src policyd.Source) policyd.Source {
	p.table.Store(t)
	return &watchedSource{src: src, p: p}
}

// watchedSource observes a policyd.Source. A Table stores a snapshot
// exactly when Overrides returns nil after a Version call, so the version
// read just before a successful Overrides is the one being served.
type watchedSource struct {
	src     policyd.Source
	p       *Policy
	pending atomic.Uint64
}

func (w *watchedSource) Version(ctx context.Context) (uint64, error) {
	v, err := w.src.Version(ctx)
	if err != nil {
		w.failed(ctx)
		return v, err
	}
	w.pending.Store(v)
	return v, nil
}

func (w *watchedSource) Overrides(ctx context.Context, add func(policyd.Override)) error {
	if err := w.src.Overrides(ctx, add); err != nil {
		w.failed(ctx)
		return err
	}
	w.p.version.Set(float64(w.pending.Load()))
	return nil
}

// failed counts a failure, unless it is the shutdown cancelling the read.
func (w *watchedSource) failed(ctx context.Context) {
	if ctx.Err() == nil {
		w.p.failures.Inc()
	}
}
