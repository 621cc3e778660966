package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailtls/mailtls/policyd"
)

const numProtos = 2 // policyd.ProtoSocketmap, policyd.ProtoTCPTable

// Lookups counts policy lookups. It implements policyd.Observer: give it
// to policyd.Server.Observer.
type Lookups struct {
	counts  [numProtos][policyd.NumOrigins][policyd.NumOutcomes]prometheus.Counter
	latency [numProtos]prometheus.Observer
}

// latencyBuckets span an answer from memory (a microsecond or two) to a
// starved machine (a quarter of a second).
var latencyBuckets = []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.25}

func newLookups(reg prometheus.Registerer) *Lookups {
	total := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace,
		Name:      "lookups_total",
		Help:      "TLS policy lookups answered, by protocol, what decided the answer (override, dane, mta-sts, default, or none for refused requests) and reply class (ok, notfound, temp, perm).",
	}, []string{"proto", "source", "result"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace,
		Name:      "lookup_duration_seconds",
		Help:      "Time from having read a lookup request to having its reply ready, network excluded.",
		Buckets:   latencyBuckets,
	}, []string{"proto"})
	reg.MustRegister(total, dur)
	l := &Lookups{}
	for p := range numProtos {
		proto := policyd.Proto(p)
		l.latency[p] = dur.WithLabelValues(proto.String())
		for o := range policyd.NumOrigins {
			for r := range policyd.NumOutcomes {
				l.counts[p][o][r] = total.WithLabelValues(proto.String(), o.String(), r.String())
			}
		}
	}
	return l
}

// ObserveLookup implements policyd.Observer: two atomic additions, no
// lock, no allocation.
func (l *Lookups) ObserveLookup(p policyd.Proto, o policyd.Origin, out policyd.Outcome, took time.Duration) {
	if int(p) >= numProtos || o >= policyd.NumOrigins || out >= policyd.NumOutcomes {
		return
	}
	l.counts[p][o][out].Inc()
	l.latency[p].Observe(took.Seconds())
}
