package store

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// A follower's advisory lock (lockSourcePG) is held by a session, and a
// PostgreSQL restart or a cut connection ends the session and with it the
// lock, while the follower itself carries on (it waits out the outage).
// keepLock watches the session and, once the server answers again, takes
// the lock again on a new one, so that a second follower started after
// the outage is still refused. If another process took it in between,
// keepLock keeps trying until that one lets go.
//
// Release unlocks on the session before closing it: closing alone leaves
// the lock to the server's teardown of the backend, which ends after
// the client has gone on, so that a follower started right after another
// stopped could still be refused. For the same reason the statements on
// the session are not cancelled by release (pgx closes a connection whose
// statement is cancelled): release waits for them, up to lockOpTimeout.

// lockCheckEvery is how often keepLock checks its session, and the
// longest it waits between attempts to take the lock again.
const lockCheckEvery = time.Second

// lockOpTimeout bounds each statement keepLock runs on its session.
const lockOpTimeout = 10 * time.Second

// lockRetaken, when set (by tests), is called each time keepLock holds
// its lock again on a new session after losing the old one.
var lockRetaken atomic.Pointer[func(key int64)]

// keepLock holds key on conn until release is called, taking it again on
// a new connection whenever conn is lost.
func (s *Store) keepLock(conn *pgx.Conn, key int64) (release func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	op := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), lockOpTimeout)
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				if conn != nil {
					octx, ocancel := op()
					_, _ = conn.Exec(octx, `SELECT pg_advisory_unlock($1)`, key)
					conn.Close(octx)
					ocancel()
				}
				return
			case <-time.After(lockCheckEvery):
			}
			octx, ocancel := op()
			if conn != nil && conn.Ping(octx) == nil {
				ocancel()
				continue
			}
			if conn != nil {
				conn.Close(octx)
				conn = nil
			}
			ocancel()
			// A session being made holds no lock yet: release may cut it.
			cctx, ccancel := context.WithTimeout(ctx, lockOpTimeout)
			c, err := pgx.ConnectConfig(cctx, s.pgcfg.Copy())
			ccancel()
			if err != nil {
				continue
			}
			octx, ocancel = op()
			var got bool
			if err := c.QueryRow(octx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil || !got {
				c.Close(octx)
				ocancel()
				continue
			}
			ocancel()
			conn = c
			if f := lockRetaken.Load(); f != nil {
				(*f)(key)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
}
