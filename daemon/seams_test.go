package daemon

import (
	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/store"
	"github.com/mailtls/mailtls/store/storetest"
)

// The SQLite store, and any backend that passes store/storetest, serves
// the daemon's part of the storage seam; StoreSource is a policyd.Source.
var (
	_ OverrideSource = (*store.Store)(nil)
	_ OverrideSource = storetest.Backend(nil)

	_ policyd.Source = StoreSource{}
)
