package main

import (
	"context"
	"fmt"
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

// refreshEvery is how often the daemon queues the refreshes that are due.
const refreshEvery = time.Minute

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
// at once, and the load of the cache from the store in the background
// (until it ends, a lookup reads its destination's entry from the store,
// so that known destinations are answered as cached); loaded is called
// when the load is over. Due refreshes are queued every minute for
// destinations with recent deliveries. It returns nil when the sources
// are off.
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
		select {
		case <-after:
		case <-ctx.Done():
		}
		n, err := r.Load(ctx)
		if err != nil && ctx.Err() == nil {
			if r.Loaded() {
				log.Warn("published sources: some cached entries were skipped", "err", err)
			} else {
				log.Error("published sources: loading the cache failed; lookups keep reading it from the store", "err", err)
			}
		}
		loaded(n)
		t := time.NewTicker(refreshEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if !r.Loaded() {
					// The start-up load failed: try again, so that
					// lookups stop reading the store.
					if _, err := r.Load(ctx); err != nil && !r.Loaded() {
						if ctx.Err() == nil {
							log.Error("published sources: loading the cache failed again; lookups keep reading it from the store", "err", err)
						}
						continue
					}
				}
				if _, _, err := r.RefreshActive(ctx); err != nil && ctx.Err() == nil {
					log.Error("published sources: refresh", "err", err)
				}
			}
		}
	})
	log.Info("published sources in use", "dane", srcs.dane, "mta-sts", srcs.mtasts)
	return p, nil
}

// publishedDaemon is the running resolver and its refresh loop; it is the
// daemon's policyd.Publisher.
type publishedDaemon struct {
	r      *published.Resolver
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Publish answers a lookup that matched no override.
func (p *publishedDaemon) Publish(key string) (policyd.Published, bool) {
	res := p.r.Lookup(context.Background(), key)
	if res.Unavailable {
		return policyd.Published{Unavailable: true}, true
	}
	if res.Source == published.SourceNone || res.Policy == "" {
		return policyd.Published{}, false
	}
	return policyd.Published{Value: res.Policy, Source: string(res.Source), TLSRPT: res.TLSRPT}, true
}

func (p *publishedDaemon) stop() {
	if p == nil {
		return
	}
	p.cancel()
	p.wg.Wait()
	p.r.Close()
}

// readOnlyStore lets `mailtls lookup` read the daemon's cache without
// writing to it.
type readOnlyStore struct{ st *store.Store }

func (s readOnlyStore) SavePublished(context.Context, string, string, string, []byte, time.Time) error {
	return nil
}

func (s readOnlyStore) LoadPublished(ctx context.Context, fn func(string, []byte) error) error {
	return s.st.LoadPublished(ctx, fn)
}

func (s readOnlyStore) PublishedEntry(ctx context.Context, domain string) ([]byte, bool, error) {
	return s.st.PublishedEntry(ctx, domain)
}

func (s readOnlyStore) DeletePublished(context.Context, string) error { return nil }

// describePublished is the text of `mailtls lookup` for a published result.
func describePublished(res published.Result) []string {
	var out []string
	ev := res.Evidence
	switch {
	case res.Pending:
		out = append(out, "published: not resolved yet")
	case res.Source == published.SourceNone:
		out = append(out, fmt.Sprintf("published: nothing applies (resolved %s ago)", res.CacheAge.Round(time.Second)))
	default:
		out = append(out, fmt.Sprintf("published: %s answers %q (resolved %s ago)", res.Source, res.Policy, res.CacheAge.Round(time.Second)))
	}
	for _, m := range ev.MX {
		line := "  mx " + m.Host
		if len(m.TLSA) > 0 {
			line += fmt.Sprintf(": TLSA %s, authenticated %v, usable %v", strings.Join(m.TLSA, " | "), m.Authenticated, m.Usable)
		} else if m.STSMatch == nil {
			line += ": no TLSA records"
		}
		if m.STSMatch != nil {
			line += fmt.Sprintf("; matches the MTA-STS patterns: %v", *m.STSMatch)
		}
		if m.Error != "" {
			line += "; error: " + m.Error
		}
		out = append(out, line)
	}
	if s := ev.MTASTS; s != nil {
		out = append(out, fmt.Sprintf("  mta-sts: policy id %s, mode %s, mx %s, max_age %d, fetched %s, expires %s",
			s.ID, s.Mode, strings.Join(s.MX, " "), s.MaxAge, s.Fetched.UTC().Format(time.RFC3339), s.Expires.UTC().Format(time.RFC3339)))
		if s.Mode == "testing" && s.Answer != "" {
			out = append(out, "  mta-sts testing: enforce would answer "+s.Answer)
		}
	}
	if res.TLSRPT != "" {
		out = append(out, "  tlsrpt (map name tlspolicy-tlsrpt, or --tlsrpt-attributes): "+res.TLSRPT)
	}
	for _, n := range ev.Notes {
		out = append(out, "  "+n)
	}
	return out
}

// noOverrides is the override source of a daemon whose --sources leave
// out override.
type noOverrides struct{}

func (noOverrides) Version(context.Context) (uint64, error) { return 0, nil }

func (noOverrides) Overrides(context.Context, func(policyd.Override)) error { return nil }

func (noOverrides) OverridesFor(context.Context, []string, func(policyd.Override)) error { return nil }
