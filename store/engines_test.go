package store

import (
	"strings"
	"testing"
)

// onPostgres reports whether t runs under TestOnPostgres, whose tests get
// their stores (openTest) from PostgreSQL.
func onPostgres(t *testing.T) bool { return strings.HasPrefix(t.Name(), "TestOnPostgres/") }

// TestOnPostgres runs the package's behavioural tests again with stores on
// PostgreSQL. Tests that look at SQLite itself (files, modes, PRAGMAs, page
// sizes, WAL, query plans, file replacement) or inject faults with SQLite
// triggers (CheckpointAtomic, ImportAllOrNothing) stay SQLite-only. The
// ...Copy runs send every batch through COPY (copyMinRows).
func TestOnPostgres(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"Downgrades", TestDowngrades},
		{"DowngradesMatchRawRows", TestDowngradesMatchRawRows},
		{"Suggest", TestSuggest},
		{"AnswerLog", TestAnswerLog},
		{"Bulk", TestBulk},
		{"BulkCopy", func(t *testing.T) { withCopy(t); TestBulk(t) }},
		{"CommitBatchIdempotent", TestCommitBatchIdempotent},
		{"CommitBatchIdempotentCopy", func(t *testing.T) { withCopy(t); TestCommitBatchIdempotent(t) }},
		{"DuplicateKeysWithinChunkCopy", func(t *testing.T) { withCopy(t); TestDuplicateKeysWithinChunk(t) }},
		{"CommitBatchEachCopy", func(t *testing.T) { withCopy(t); TestCommitBatchEach(t) }},
		{"CommitBatchValidation", TestCommitBatchValidation},
		{"DeliveriesRoundTripAndFilter", TestDeliveriesRoundTripAndFilter},
		{"DeliveriesFilterMatchesRawRows", TestDeliveriesFilterMatchesRawRows},
		{"DuplicateKeysWithinChunk", TestDuplicateKeysWithinChunk},
		{"CommitBatchEach", TestCommitBatchEach},
		{"OverridesInForce", TestOverridesInForce},
		{"InternalHops", TestInternalHops},
		{"OverridesCRUD", TestOverridesCRUD},
		{"OverrideValidation", TestOverrideValidation},
		{"OverridesVersion", TestOverridesVersion},
		{"ConcurrentVersionAndWrites", TestConcurrentVersionAndWrites},
		{"ImportOverridesBlocks", TestImportOverridesBlocks},
		{"Prune", TestPrune},
		{"Status", TestStatus},
		{"Published", TestPublished},
		{"ActiveDomains", TestActiveDomains},
		{"SummaryMatchesRawRows", TestSummaryMatchesRawRows},
		{"ReportByMatchesRawRows", TestReportByMatchesRawRows},
		{"OverrideActivityMatchesRawRows", TestOverrideActivityMatchesRawRows},
		{"DryRunMatchesRawRows", TestDryRunMatchesRawRows},
		{"TLSRPTSendOnce", TestTLSRPTSendOnce},
		{"DomainFilterIDN", TestDomainFilterIDN},
		{"NoHostToWriteAs", TestNoHostToWriteAs},
	} {
		t.Run(tc.name, tc.f)
	}
}

// withCopy makes every batch of t go in with COPY on PostgreSQL.
func withCopy(t *testing.T) {
	old := copyMinRows
	copyMinRows = 1
	t.Cleanup(func() { copyMinRows = old })
}
