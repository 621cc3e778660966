package policyd

import (
	"context"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"
)

// KeySource reads the overrides of a few keys at once, by point queries on
// the store: what a Table answers from while its first load runs (see
// SetWarmup). Keys are in normal form (NormalizeKey), as every writer of
// the store keeps them.
type KeySource interface {
	// OverridesFor calls add for the overrides whose key is one of keys.
	OverridesFor(ctx context.Context, keys []string, add func(Override)) error
}

// warmupTimeout bounds the point query of one lookup during warm-up.
const warmupTimeout = 2 * time.Second

type warmupBox struct {
	src    KeySource
	failed atomic.Bool // a point query failed: logged once
}

// SetWarmup makes the lookups that come before the first snapshot answer
// from src instead of TEMP: each reads the overrides that could match its
// key (the key itself and its parent wildcards, as Lookup tries them) and
// answers from a snapshot of those alone, which answers exactly as the
// whole table would. A daemon can so listen at once and load its table in
// the background without ever answering weaker than the table says. A
// lookup whose point query fails gets TEMP. Once a snapshot is stored src
// is no longer used.
func (t *Table) SetWarmup(src KeySource) {
	if src == nil {
		t.warm.Store(nil)
		return
	}
	t.warm.Store(&warmupBox{src: src})
}

// warmupSnapshot returns a snapshot holding every override that can
// match key, which the server has lowercased, read from the warm-up
// source; or nil when there is none, or its query failed (logged at Error
// the first time, then at Debug).
func (t *Table) warmupSnapshot(key []byte, ascii bool, log *slog.Logger) *Snapshot {
	w := t.warm.Load()
	if w == nil {
		return nil
	}
	var k []byte
	if ascii {
		k = trimKeyDot([]byte(string(key)))
	} else {
		// As lookupSlow normalises it.
		nk, err := NormalizeKey(string(key))
		if err != nil {
			nk = strings.ToLower(string(key))
		}
		k = trimKeyDot([]byte(nk))
	}
	keys := []string{string(k)}
	if isDomainKey(k) {
		for i := nextParent(k, 0); i > 0; i = nextParent(k, i) {
			keys = append(keys, string(k[i:]))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), warmupTimeout)
	defer cancel()
	b := NewBuilder(*t.def.Load(), len(keys))
	b.byKey = true // as load does
	if err := w.src.OverridesFor(ctx, keys, b.Add); err != nil {
		lvl := slog.LevelDebug
		if w.failed.CompareAndSwap(false, true) {
			lvl = slog.LevelError
		}
		log.Log(ctx, lvl, "policy table still loading and its point query failed: answering TEMP", "key", string(k), "err", err)
		return nil
	}
	return b.Snapshot()
}

// warmupGCPercent is the GOGC of the start-up loads: a million overrides
// and a hundred thousand cached policies then peak at about 1.25 times
// what they keep, at some CPU cost while the warm-up answers.
const warmupGCPercent = 25

// WarmupGC lowers GOGC for the daemon's start-up loads (the first
// snapshot of the overrides, and the published cache) and returns what
// restores it. The garbage of the loads would otherwise let the heap grow to twice
// what they keep (GOGC=100), and the process keep that peak.
func WarmupGC() (restore func()) {
	gcPercent := debug.SetGCPercent(-1)
	debug.SetGCPercent(min(gcPercent, warmupGCPercent))
	if gcPercent < 0 {
		debug.SetGCPercent(gcPercent) // GOGC=off stays off
	}
	return func() { debug.SetGCPercent(gcPercent) }
}
