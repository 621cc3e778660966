package main

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/discover"
	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/published"
	"github.com/mailtls/mailtls/store"
)

// Policy sources of the daemon, strongest first (--sources).
const (
	sourceOverride = "override"
	sourceDANE     = "dane"
	sourceMTASTS   = "mta-sts"
	allSources     = sourceOverride + "," + sourceDANE + "," + sourceMTASTS
)

// maxResolveTimeout bounds --resolve-timeout: a first contact that waits
// longer holds up a delivery for little gain (resolution goes on in the
// background anyway), and approaches the limits Postfix puts on a policy
// connection (10 s idle, 100 s in all).
const maxResolveTimeout = 10 * time.Second

// sourceSet is a parsed --sources.
type sourceSet struct{ override, dane, mtasts bool }

func (s sourceSet) published() bool { return s.dane || s.mtasts }

func parseSources(v string) (sourceSet, error) {
	var s sourceSet
	for _, f := range strings.Split(v, ",") {
		switch strings.ToLower(strings.TrimSpace(f)) {
		case sourceOverride:
			s.override = true
		case sourceDANE:
			s.dane = true
		case sourceMTASTS:
			s.mtasts = true
		default:
			return s, usageErrorf("--sources %q: unknown source %q (want a comma-separated list of %s)", v, strings.TrimSpace(f), allSources)
		}
	}
	return s, nil
}

// publishedFlags are the daemon's flags for the published sources.
func publishedFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "sources", Value: allSources, Usage: "policy `SOURCES` in force, comma-separated, strongest first: override (operator overrides), dane, mta-sts (what destinations publish); override alone answers without DNS"},
		&cli.StringFlag{Name: "resolver", Usage: "DNS resolver `ADDR` (host:port) for DANE and MTA-STS; default: the first nameserver of /etc/resolv.conf. DANE needs a validating resolver on loopback"},
		&cli.DurationFlag{Name: "resolve-timeout", Value: published.DefaultBudget, Usage: "`DURATION` a lookup for a destination seen for the first time waits for DANE and MTA-STS; then the default answers and resolution goes on in the background"},
	}
}

// newPublished builds the resolver of the published sources, or nil when
// dane and mta-sts are both off. store may be nil (no cache kept).
func newPublished(c *cli.Context, srcs sourceSet, st published.Store, active published.ActiveFunc, log *slog.Logger) (*published.Resolver, error) {
	if !srcs.published() {
		return nil, nil
	}
	budget := c.Duration("resolve-timeout")
	if budget <= 0 || budget > maxResolveTimeout {
		return nil, usageErrorf("--resolve-timeout %s: want more than 0 and at most %s", budget, maxResolveTimeout)
	}
	addr := c.String("resolver")
	res, err := discover.NewResolver(addr, "")
	if err != nil {
		return nil, usageErrorf("--resolver: %v", err)
	}
	if res.Note != "" {
		log.Warn("published sources: " + res.Note)
	}
	if addr == "" {
		res.Servers = res.Servers[:1]
	}
	trust := published.ADTrusted(res.Servers)
	if srcs.dane && !trust {
		log.Warn("published sources: the resolver is not on loopback, so its AD bit is not trusted and DANE gives no answers (run a validating resolver on 127.0.0.1 and pass --resolver)",
			"resolver", res.Servers[0])
	}
	return published.New(published.Config{
		DNS: res, Resolver: res.Servers[0], TrustAD: trust,
		NoDANE: !srcs.dane, NoMTASTS: !srcs.mtasts,
		Budget: budget, Active: active, Store: st, Logger: log,
	})
}

// startPublished starts the published sources of the daemon: the workers
// at once, then (published.Resolver.Run) the load of the cache once after
// is closed, and the refreshes; loaded is called when the load is over.
// It returns nil when the sources are off.
func startPublished(ctx context.Context, c *cli.Context, srcs sourceSet, st *store.Store, log *slog.Logger, after <-chan struct{}, loaded func(cached int)) (*publishedDaemon, error) {
	r, err := newPublished(c, srcs, st, st.ActiveDomains, log)
	if r == nil || err != nil {
		return nil, err
	}
	r.Start()
	p := &publishedDaemon{r: r}
	ctx, p.cancel = context.WithCancel(ctx)
	p.wg.Go(func() {
		defer r.Close() // also when start-up fails after this point
		r.Run(ctx, after, published.RefreshEvery, loaded)
	})
	log.Info("published sources in use", "dane", srcs.dane, "mta-sts", srcs.mtasts)
	return p, nil
}

// publishedDaemon is the running resolver and its refresh loop.
type publishedDaemon struct {
	r      *published.Resolver
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (p *publishedDaemon) stop() {
	if p == nil {
		return
	}
	p.cancel()
	p.wg.Wait()
	p.r.Close()
}

// noOverrides is the override source of a daemon whose --sources leave
// out override.
type noOverrides struct{}

func (noOverrides) Version(context.Context) (uint64, error) { return 0, nil }

func (noOverrides) Overrides(context.Context, func(policyd.Override)) error { return nil }

func (noOverrides) OverridesFor(context.Context, []string, func(policyd.Override)) error { return nil }
