package published

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mailtls/mailtls/policyd"
)

// RefreshEvery is how often a daemon's resolver queues the refreshes that
// are due (Run).
const RefreshEvery = time.Minute

// Publish makes the resolver a daemon's policyd.Publisher: it answers a
// lookup that matched no override.
func (r *Resolver) Publish(key string) (policyd.Published, bool) {
	res := r.Lookup(context.Background(), key)
	if res.Unavailable {
		return policyd.Published{Unavailable: true}, true
	}
	if res.Source == SourceNone || res.Policy == "" {
		return policyd.Published{}, false
	}
	return policyd.Published{Value: res.Policy, Source: string(res.Source), TLSRPT: res.TLSRPT}, true
}

// Run is a daemon's life of a started resolver, until ctx is done: once
// after is closed (the overrides are loaded), it loads the cache from the
// store (until that ends, a lookup reads its destination's entry from the
// store, so that known destinations are answered as cached) and calls
// loaded; then every `every` it queues the due refreshes of destinations
// with recent deliveries, first loading the cache again while the
// start-up load has not succeeded. Closing the resolver is the caller's.
func (r *Resolver) Run(ctx context.Context, after <-chan struct{}, every time.Duration, loaded func(cached int)) {
	select {
	case <-after:
	case <-ctx.Done():
	}
	n, err := r.Load(ctx)
	if err != nil && ctx.Err() == nil {
		if r.Loaded() {
			r.log.Warn("published sources: some cached entries were skipped", "err", err)
		} else {
			r.log.Error("published sources: loading the cache failed; lookups keep reading it from the store", "err", err)
		}
	}
	loaded(n)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.tick(ctx)
		}
	}
}

func (r *Resolver) tick(ctx context.Context) {
	if !r.Loaded() {
		// The start-up load failed: try again, so that lookups stop
		// reading the store.
		if _, err := r.Load(ctx); err != nil && !r.Loaded() {
			if ctx.Err() == nil {
				r.log.Error("published sources: loading the cache failed again; lookups keep reading it from the store", "err", err)
			}
			return
		}
	}
	if _, _, err := r.RefreshActive(ctx); err != nil && ctx.Err() == nil {
		r.log.Error("published sources: refresh", "err", err)
	}
}

// ReadOnly is st for a resolver that may read the cache but not change
// it (`mailtls lookup`): saves and deletes do nothing, and no answer is
// logged.
func ReadOnly(st Store) Store { return readOnly{st} }

type readOnly struct{ st Store }

func (s readOnly) SavePublished(context.Context, string, string, string, []byte, time.Time) error {
	return nil
}

func (s readOnly) LoadPublished(ctx context.Context, fn func(string, []byte) error) error {
	return s.st.LoadPublished(ctx, fn)
}

func (s readOnly) PublishedEntry(ctx context.Context, domain string) ([]byte, bool, error) {
	return s.st.PublishedEntry(ctx, domain)
}

func (s readOnly) DeletePublished(context.Context, string) error { return nil }

// Describe is the evidence of res as text lines, for `mailtls lookup`.
func (res Result) Describe() []string {
	var out []string
	ev := res.Evidence
	switch {
	case res.Pending:
		out = append(out, "published: not resolved yet")
	case res.Source == SourceNone:
		out = append(out, fmt.Sprintf("published: nothing applies (resolved %s ago)", res.CacheAge.Round(time.Second)))
	default:
		out = append(out, fmt.Sprintf("published: %s answers %q (resolved %s ago)", res.Source, res.Policy, res.CacheAge.Round(time.Second)))
	}
	for _, m := range ev.MX {
		out = append(out, m.describe())
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

func (m MXEvidence) describe() string {
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
	return line
}
