package store

import (
	"context"
	"sync"
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

// lockCheckEvery is how often keepLock checks its session, and the
// longest it waits between attempts to take the lock again.
const lockCheckEvery = time.Second

// keepLock holds key on conn until release is called, taking it again on
// a new connection whenever conn is lost.
func (s *Store) keepLock(conn *pgx.Conn, key int64) (release func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				if conn != nil {
					conn.Close(context.Background())
				}
				return
			case <-time.After(lockCheckEvery):
			}
			if conn != nil && conn.Ping(ctx) == nil {
				continue
			}
			if conn != nil {
				conn.Close(context.Background())
				conn = nil
			}
			c, err := pgx.ConnectConfig(ctx, s.pgcfg.Copy())
			if err != nil {
				continue
			}
			var got bool
			if err := c.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil || !got {
				c.Close(context.Background())
				continue
			}
			conn = c
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
