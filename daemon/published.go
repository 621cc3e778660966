package daemon

import (
	"context"
	"log/slog"
	"sync"

	"github.com/mailtls/mailtls/published"
	"github.com/mailtls/mailtls/store"
)

// publishedDaemon is the running resolver and its refresh loop.
type publishedDaemon struct {
	r      *published.Resolver
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startPublished starts the published sources of the daemon: the workers
// at once, then (published.Resolver.Run) the load of the cache once after
// is closed, and the refreshes; loaded is called when the load is over.
// It returns nil when the sources are off.
func startPublished(ctx context.Context, o published.Options, st *store.Store, log *slog.Logger, after <-chan struct{}, loaded func(cached int)) (*publishedDaemon, error) {
	o.Active, o.Store, o.Logger = st.ActiveDomains, st, log
	r, err := published.Open(o)
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
	log.Info("published sources in use", "dane", o.Sources.DANE, "mta-sts", o.Sources.MTASTS)
	return p, nil
}

func (p *publishedDaemon) stop() {
	if p == nil {
		return
	}
	p.cancel()
	p.wg.Wait()
	p.r.Close()
}
