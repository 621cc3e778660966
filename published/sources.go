package published

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/mailtls/mailtls/discover"
)

// The policy sources of the daemon, strongest first (the commands'
// --sources): the operator's overrides, then what destinations publish.
const (
	SourceOverride = "override"
	AllSources     = SourceOverride + "," + string(SourceDANE) + "," + string(SourceMTASTS)
)

// MaxBudget bounds Options.Budget (--resolve-timeout): a first contact
// that waits longer holds up a delivery for little gain (resolution goes
// on in the background anyway), and approaches the limits Postfix puts on
// a policy connection (10 s idle, 100 s in all).
const MaxBudget = 10 * time.Second

// Sources are the policy sources in force.
type Sources struct{ Override, DANE, MTASTS bool }

// Published reports whether a published source (DANE or MTA-STS) is on.
func (s Sources) Published() bool { return s.DANE || s.MTASTS }

// ParseSources parses a comma-separated list of sources (AllSources).
func ParseSources(v string) (Sources, error) {
	var s Sources
	for _, f := range strings.Split(v, ",") {
		switch strings.ToLower(strings.TrimSpace(f)) {
		case SourceOverride:
			s.Override = true
		case string(SourceDANE):
			s.DANE = true
		case string(SourceMTASTS):
			s.MTASTS = true
		default:
			return s, fmt.Errorf("unknown source %q (want a comma-separated list of %s)", strings.TrimSpace(f), AllSources)
		}
	}
	return s, nil
}

// Options are the settings of the published sources as the commands take
// them (--sources, --resolver, --resolve-timeout).
type Options struct {
	Sources  Sources
	Resolver string        // DNS server host:port; "": the first nameserver of resolv.conf
	Budget   time.Duration // more than 0, at most MaxBudget
	Active   ActiveFunc    // nil: no proactive refresh
	Store    Store         // nil: no cache kept
	Logger   *slog.Logger
}

// OptionError is an invalid Options field, named as the command's flag.
type OptionError struct{ Msg string }

func (e *OptionError) Error() string { return e.Msg }

// Open builds the resolver of the published sources over the DNS server
// of o, or returns nil when DANE and MTA-STS are both off. It warns on
// o.Logger when the server's AD bit cannot be trusted (ADTrusted), since
// DANE then gives no answers.
func Open(o Options) (*Resolver, error) {
	if !o.Sources.Published() {
		return nil, nil
	}
	if o.Budget <= 0 || o.Budget > MaxBudget {
		return nil, &OptionError{fmt.Sprintf("--resolve-timeout %s: want more than 0 and at most %s", o.Budget, MaxBudget)}
	}
	res, err := discover.NewResolver(o.Resolver, "")
	if err != nil {
		return nil, &OptionError{fmt.Sprintf("--resolver: %v", err)}
	}
	if res.Note != "" {
		o.Logger.Warn("published sources: " + res.Note)
	}
	if o.Resolver == "" {
		res.Servers = res.Servers[:1]
	}
	trust := ADTrusted(res.Servers)
	if o.Sources.DANE && !trust {
		o.Logger.Warn("published sources: the resolver is not on loopback, so its AD bit is not trusted and DANE gives no answers (run a validating resolver on 127.0.0.1 and pass --resolver)",
			"resolver", res.Servers[0])
	}
	return New(Config{
		DNS: res, Resolver: res.Servers[0], TrustAD: trust,
		NoDANE: !o.Sources.DANE, NoMTASTS: !o.Sources.MTASTS,
		Budget: o.Budget, Active: o.Active, Store: o.Store, Logger: o.Logger,
	})
}
