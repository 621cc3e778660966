package ingest

import (
	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/store"
	"github.com/mailtls/mailtls/store/storetest"
)

// The SQLite store, and any backend that passes store/storetest, serves
// the pipeline's seams; both followers are a Source.
var (
	_ BatchCommitter = (*store.Store)(nil)
	_ FollowStore    = (*store.Store)(nil)
	_ Bulk           = (*store.Bulk)(nil)

	_ FollowStore = storetest.Backend(nil)

	_ Source = (*logparse.Follower)(nil)
	_ Source = (*logparse.JournalFollower)(nil)
)
