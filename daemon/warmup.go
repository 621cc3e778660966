package daemon

import (
	"context"
	"runtime/debug"
	"strings"
	"time"
)

// warmUp loads the overrides in the background, then watches them
// (polling every `every`, and at once on what wake returns, asked
// after the first load); ovDone is closed when the
// first load is over. When every start-up load is done, GOGC is restored
// and the end of the warm-up logged.
func (d *Daemon) warmUp(ctx context.Context, every time.Duration, wake func() <-chan struct{}, ovDone chan struct{}, restoreGC func()) {
	d.warm.Add(1)
	d.wg.Go(func() {
		// The first load here, so that its end is known; Watch then
		// starts from the version it loaded (or, after a failure, retries
		// at every poll while the warm-up goes on answering).
		if _, err := d.table.Reload(ctx, d.src); err != nil && ctx.Err() == nil {
			d.log.Error("loading the overrides failed; lookups keep reading them from the store, retrying", "err", err)
		}
		d.ovLoaded = time.Since(d.t0)
		close(ovDone)
		d.warm.Done()
		_ = d.table.WatchWake(ctx, d.src, every, wake(), d.log)
	})
	d.wg.Go(func() {
		d.warm.Wait()
		restoreGC()
		if ctx.Err() != nil {
			return
		}
		debug.FreeOSMemory() // the garbage of the loads
		args := []any{"overrides", d.table.Load().Len(), "overrides_load", d.ovLoaded.Round(time.Millisecond)}
		if d.pub != nil {
			args = append(args, "published", d.cached, "published_load", d.pubLoaded.Round(time.Millisecond))
		}
		if what := d.loading(); what != "" {
			d.log.Warn("start-up loads ended without the "+what+": lookups keep reading them from the store", args...)
			return
		}
		d.log.Info("start-up loads done: answering from memory", args...)
	})
}

// loading says what the daemon is still loading at start-up, or "".
func (d *Daemon) loading() string {
	var what []string
	if d.table.Load() == nil {
		what = append(what, "overrides")
	}
	if d.pub != nil && !d.pub.r.Loaded() {
		what = append(what, "published cache")
	}
	return strings.Join(what, " and ")
}
