package main

import (
	"github.com/mailtls/mailtls/store"
	"github.com/mailtls/mailtls/store/storetest"
)

// The SQLite store, and any backend that passes store/storetest, serves
// every seam of the commands (ingest's are checked in ingest, the
// daemon's in daemon).
var (
	_ overrideWriter = (*store.Store)(nil)

	_ overrideWriter = storetest.Backend(nil)
)
