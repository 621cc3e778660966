package main

import (
	"github.com/mailtls/mailtls/ingest"
	"github.com/mailtls/mailtls/overrides"
)

// The storage seam of the commands (ARCHITECTURE.md, "Add a store
// engine"): each interface is the part of the store one use case needs.
// *store.Store implements them all, and so must any backend that passes
// store/storetest (seams_test.go checks both). The import and follow
// pipeline's part is in package ingest (ingest/seams.go), the daemon's
// in package daemon (daemon.OverrideSource).

// hostSetter is ingest's, for the commands that write deliveries.
type hostSetter = ingest.HostSetter

// overrideWriter is overrides.Store: what policy set/rm/import and check
// --apply change the overrides through, each change recorded in the
// history with who made it and when.
type overrideWriter = overrides.Store
