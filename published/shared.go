package published

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"
)

// Refresh claims (SharedStore). A claim lasts claimFor, longer than a
// resolution may take (resolveTimeout), and is released when the
// resolution is stored. A daemon that finds another's claim checks the
// shared cache every claimPoll, for at most its lookup budget; then it
// gives up for this time and keeps what it knew: the next lookup or
// refresh tries again, and a claim whose holder died lapses by itself.
const (
	claimFor  = 30 * time.Second
	claimPoll = 100 * time.Millisecond
)

// holderName names this daemon in claims: host name, process id and a
// random part (two daemons of one host, or a restarted one, differ).
func holderName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "unknown"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", h, os.Getpid(), hex.EncodeToString(b[:]))
}

// claim settles who resolves j's destination when daemons share the
// store. It returns the answer another daemon stored since j was queued,
// to adopt instead of resolving, or claimed true when this daemon is to
// resolve. When the store cannot say (an error), this daemon resolves:
// coordination saves work, it never holds an answer up.
func (r *Resolver) claim(ctx context.Context, sh SharedStore, j *job, prev *state) (_ *state, claimed bool) {
	deadline := r.clock.Now().Add(r.budget)
	for {
		if st := r.fresher(ctx, j, prev); st != nil {
			return st, false
		}
		now := r.clock.Now()
		ok, err := sh.ClaimRefresh(ctx, j.domain, r.holder, now, now.Add(claimFor))
		if err != nil {
			r.log.Warn("published policy: cannot claim the refresh in the shared cache; resolving here", "domain", j.domain, "error", err)
			return nil, true
		}
		if ok {
			return nil, true
		}
		if !now.Before(deadline) {
			r.log.Debug("published policy: another daemon is resolving; keeping the cached answer", "domain", j.domain)
			return nil, false
		}
		select {
		case <-ctx.Done():
			return nil, false
		case <-r.clock.After(claimPoll):
		}
	}
}

// fresher returns the shared cache's entry for j's destination when
// another daemon stored it after what this one knows (prev), after j was
// queued if j forces a refresh, and it is not due itself; nil otherwise.
func (r *Resolver) fresher(ctx context.Context, j *job, prev *state) *state {
	ctx, cancel := context.WithTimeout(ctx, r.budget)
	defer cancel()
	data, ok, err := r.store.PublishedEntry(ctx, j.domain)
	if err != nil || !ok {
		return nil
	}
	st, err := decodeState(j.domain, data, nil)
	if err != nil {
		return nil
	}
	at := st.result.ResolvedAt
	switch {
	case prev != nil && !at.After(prev.result.ResolvedAt):
		return nil
	case j.force && at.Before(j.queued):
		return nil
	case !r.clock.Now().Before(st.refreshAt):
		return nil
	}
	return st
}
