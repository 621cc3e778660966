package store

import (
	"context"
	"database/sql"
	"fmt"
)

// Settings of the reader connections (dsn).
const (
	readerCacheKiB = 32768     // page cache per connection
	readerMmap     = 268435456 // bytes of the file mapped
)

// bulkCacheKiB is the page cache of a bulk read: a sequential scan reads
// each page once.
const bulkCacheKiB = 2048

// bulkRead runs fn on a reader connection without mmap and with a small
// page cache, and restores the reader settings afterwards. A scan of a
// whole table through mmap leaves every page of it mapped, and counted in
// the resident memory of the process, for as long as the connection
// lives: for the daemon's start-up load of a million overrides that was
// about 190 MB. Read through the OS page cache instead, the pages stay
// cached by the kernel but not resident in the daemon.
func (s *Store) bulkRead(ctx context.Context, fn func(*sql.Conn) error) error {
	r, err := s.reader()
	if err != nil {
		return err
	}
	c, err := r.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: reader connection: %w", err)
	}
	defer c.Close()
	if s.eng != engSQLite {
		return fn(c) // the settings are SQLite's
	}
	set := func(mmap, cache int) error {
		if _, err := c.ExecContext(ctx, fmt.Sprintf("PRAGMA mmap_size=%d", mmap)); err != nil {
			return err
		}
		_, err := c.ExecContext(ctx, fmt.Sprintf("PRAGMA cache_size=-%d", cache))
		return err
	}
	if err := set(0, bulkCacheKiB); err != nil {
		_ = c.Raw(func(any) error { return sql.ErrConnDone }) // do not return it to the pool half-set
		return fmt.Errorf("store: bulk read settings: %w", err)
	}
	ferr := fn(c)
	if err := set(readerMmap, readerCacheKiB); err != nil {
		_ = c.Raw(func(any) error { return sql.ErrConnDone })
		if ferr == nil {
			ferr = fmt.Errorf("store: restoring reader settings: %w", err)
		}
	}
	return ferr
}
