package policyd

import "time"

// Proto is the lookup protocol a listener speaks.
type Proto uint8

// Lookup protocols.
const (
	ProtoSocketmap Proto = iota // socketmap_table(5)
	ProtoTCPTable               // tcp_table(5)
)

// String returns "socketmap" or "tcp_table".
func (p Proto) String() string {
	if p == ProtoTCPTable {
		return "tcp_table"
	}
	return "socketmap"
}

// Origin is what decided an answer.
type Origin uint8

// Origins of an answer. OriginNone: the request was refused or failed
// before any policy applied (malformed, unknown map, table not loaded).
const (
	OriginNone     Origin = iota
	OriginOverride        // an operator override (exact or wildcard)
	OriginDefault         // the default answer, or NOTFOUND for want of one
	OriginDANE            // published: the destination's TLSA records
	OriginMTASTS          // published: the destination's MTA-STS enforce policy
	NumOrigins            // the number of Origin values
)

var originNames = [NumOrigins]string{"none", "override", "default", "dane", "mta-sts"}

// String returns "none", "override", "default", "dane" or "mta-sts".
func (o Origin) String() string {
	if o < NumOrigins {
		return originNames[o]
	}
	return "none"
}

// Outcome is the class of a reply as Postfix sees it.
type Outcome uint8

// Reply classes: socketmap OK/NOTFOUND/TEMP/PERM; tcp_table 200/500/400
// (tcp_table has no permanent error: 400 is OutcomeTemp).
const (
	OutcomeOK Outcome = iota
	OutcomeNotFound
	OutcomeTemp
	OutcomePerm
	NumOutcomes // the number of Outcome values
)

var outcomeNames = [NumOutcomes]string{"ok", "notfound", "temp", "perm"}

// String returns "ok", "notfound", "temp" or "perm".
func (o Outcome) String() string {
	if o < NumOutcomes {
		return outcomeNames[o]
	}
	return "perm"
}

// Observer is told about every reply a Server sends. It is called on the
// lookup path, once per request, from many goroutines at once: it must be
// safe for concurrent use and must not block or allocate.
type Observer interface {
	// ObserveLookup reports one reply: the protocol, what decided it, its
	// class, and the time from having read the request to having
	// buffered the reply (network time excluded).
	ObserveLookup(p Proto, o Origin, out Outcome, took time.Duration)
}

// originOf maps a lookup result to the Origin of its answer.
func originOf(r Result) Origin {
	switch r.Rule {
	case RuleExact, RuleWildcard:
		return OriginOverride
	case RulePublished:
		switch r.Source {
		case "dane":
			return OriginDANE
		case "mta-sts":
			return OriginMTASTS
		}
		return OriginDefault
	default:
		return OriginDefault
	}
}

// observe reports a reply to s.Observer, timed from t0 (zero when there
// is no observer).
func (s *Server) observe(p Proto, o Origin, out Outcome, t0 time.Time) {
	if s.Observer != nil {
		s.Observer.ObserveLookup(p, o, out, time.Since(t0))
	}
}

// startTimer returns the start time of a request, or the zero time when
// nothing observes the server (so that unobserved lookups do not read the
// clock).
func (s *Server) startTimer() time.Time {
	if s.Observer == nil {
		return time.Time{}
	}
	return time.Now()
}
