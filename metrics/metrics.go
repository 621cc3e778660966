package metrics

import (
	"net/http"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "mailtls"

// Options configure New.
type Options struct {
	// Daemon registers the lookup and policy snapshot metrics.
	Daemon bool
	// Follower registers the delivery and follower metrics (and the
	// policy snapshot ones: a standalone follower reads the overrides to
	// tell forced destinations).
	Follower bool
	// Domains is how many recipient domains get a domain label of their
	// own on the delivery counters (the top Domains by volume, see
	// Deliveries.SetDomains); the rest are counted as "other". 0: no
	// domain label.
	Domains int
}

// Metrics is one process's registry and collectors. Parts that the
// Options did not ask for are nil: a `serve` process records no
// deliveries, and a `follow` process answers no lookups.
type Metrics struct {
	reg        *prometheus.Registry
	Lookups    *Lookups
	Deliveries *Deliveries
	Follower   *Follower
	Policy     *Policy
}

// New registers every mailtls collector, build information and the Go and
// process collectors in a fresh registry.
func New(o Options) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{reg: reg}
	if o.Daemon {
		m.Lookups = newLookups(reg)
	}
	if o.Daemon || o.Follower {
		m.Policy = newPolicy(reg)
	}
	if o.Follower {
		m.Deliveries = newDeliveries(reg, o.Domains)
		m.Follower = newFollower(reg)
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
		buildInfo(),
	)
	return m
}

// Registry returns the registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text (or negotiated)
// exposition format. Scrapes run one at a time, so that a burst of
// scrapes cannot pile up work.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		MaxRequestsInFlight: 1,
		ErrorHandling:       promhttp.ContinueOnError,
	})
}

// buildInfo is mailtls_build_info{version,revision,goversion} 1.
func buildInfo() prometheus.Collector {
	version, revision, goversion := "(devel)", "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goversion = bi.GoVersion
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   namespace,
		Name:        "build_info",
		Help:        "Always 1; the labels say which mailtls build is running.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goversion},
	})
	g.Set(1)
	return g
}
