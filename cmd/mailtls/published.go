package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/published"
	"github.com/mailtls/mailtls/store"
)

// parseSources parses --sources.
func parseSources(v string) (published.Sources, error) {
	s, err := published.ParseSources(v)
	if err != nil {
		return s, usageErrorf("--sources %q: %v", v, err)
	}
	return s, nil
}

// publishedFlags are the daemon's flags for the published sources.
func publishedFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "sources", Value: published.AllSources, Usage: "policy `SOURCES` in force, comma-separated, strongest first: override (operator overrides), dane, mta-sts (what destinations publish); override alone answers without DNS"},
		&cli.StringFlag{Name: "resolver", Usage: "DNS resolver `ADDR` (host:port) for DANE and MTA-STS; default: the first nameserver of /etc/resolv.conf. DANE needs a validating resolver on loopback"},
		&cli.DurationFlag{Name: "resolve-timeout", Value: published.DefaultBudget, Usage: "`DURATION` a lookup for a destination seen for the first time waits for DANE and MTA-STS; then the default answers and resolution goes on in the background"},
	}
}

// newPublished builds the resolver of the published sources, or nil when
// dane and mta-sts are both off. store may be nil (no cache kept).
func newPublished(c *cli.Context, srcs published.Sources, st published.Store, active published.ActiveFunc, log *slog.Logger) (*published.Resolver, error) {
	r, err := published.Open(published.Options{Sources: srcs, Resolver: c.String("resolver"),
		Budget: c.Duration("resolve-timeout"), Active: active, Store: st, Logger: log})
	var oe *published.OptionError
	if errors.As(err, &oe) {
		return nil, usageErrorf("%v", oe)
	}
	return r, err
}

// startPublished starts the published sources of the daemon: the workers
// at once, then (published.Resolver.Run) the load of the cache once after
// is closed, and the refreshes; loaded is called when the load is over.
// It returns nil when the sources are off.
func startPublished(ctx context.Context, c *cli.Context, srcs published.Sources, st *store.Store, log *slog.Logger, after <-chan struct{}, loaded func(cached int)) (*publishedDaemon, error) {
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
	log.Info("published sources in use", "dane", srcs.DANE, "mta-sts", srcs.MTASTS)
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
