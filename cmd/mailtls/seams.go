package main

import (
	"context"

	"github.com/mailtls/mailtls/ingest"
	"github.com/mailtls/mailtls/store"
)

// The storage seam of the commands (ARCHITECTURE.md, "Add a store
// engine"): each interface is the part of the store one use case needs.
// *store.Store implements them all, and so must any backend that passes
// store/storetest (seams_test.go checks both). The import and follow
// pipeline's part is in package ingest (ingest/seams.go), the daemon's
// in package daemon (daemon.OverrideSource).

// pruner and hostSetter are ingest's, for the commands that prune or
// write deliveries.
type (
	pruner     = ingest.Pruner
	hostSetter = ingest.HostSetter
)

// overrideWriter changes the overrides (policy set/rm/import, check
// --apply), each change recorded in the history with who made it and when.
type overrideWriter interface {
	SetOverride(ctx context.Context, o store.Override, actor string) error
	RemoveOverride(ctx context.Context, key, actor string) error
	ImportOverrides(ctx context.Context, ovs []store.Override, actor string) (int, error)
	Overrides(ctx context.Context) ([]store.Override, error)
	History(ctx context.Context, key string) ([]store.Change, error)
}
