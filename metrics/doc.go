// Package metrics holds mailtls's Prometheus collectors: policy lookups
// (fed by policyd.Server through the policyd.Observer interface), the
// policy snapshot, recorded deliveries and the log follower.
//
// Names follow the Prometheus naming conventions
// (https://prometheus.io/docs/practices/naming/): a mailtls_ prefix,
// base units (seconds, bytes), _total on counters. Every label has a
// small fixed set of values, except the optional domain label, which is
// capped at a configured number of domains plus "other".
//
// The lookup path costs no lock and no allocation: every (proto, source,
// result) counter and every latency histogram is resolved once, in New,
// and a lookup adds to them atomically.
package metrics
