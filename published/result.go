package published

import (
	"time"
)

// Source names where an answer came from.
type Source string

// Sources, strongest first. SourceNone means the destination publishes
// nothing that gives an answer: the caller's default applies.
const (
	SourceDANE   Source = "dane"
	SourceMTASTS Source = "mta-sts"
	SourceNone   Source = "none"
)

// Result is the published answer for one destination, with its evidence.
type Result struct {
	Domain string `json:"domain"`
	Source Source `json:"source"`
	// Policy is the Postfix policy value, validated by policyd; "" with
	// SourceNone.
	Policy string `json:"policy,omitempty"`
	// TLSRPT holds the TLSRPT attributes of Policy for Postfix 3.10 and
	// later (policyd.TLSRPTPolicy.Format), "" with SourceNone. Not
	// stored: it is derived again from the evidence when loaded.
	TLSRPT string `json:"tlsrpt,omitempty"`
	// ResolvedAt is when the evidence was gathered; CacheAge is its age at
	// the time of the lookup (not stored).
	ResolvedAt time.Time     `json:"resolved_at"`
	CacheAge   time.Duration `json:"-"`
	// Pending is set when the destination has not been resolved yet (first
	// contact beyond the budget, or the resolution queue was full).
	Pending bool `json:"pending,omitempty"`
	// Unavailable is set when the answer cannot be known now: the cache
	// is still loading and the store failed to read this destination's
	// entry. Not stored.
	Unavailable bool     `json:"-"`
	Evidence    Evidence `json:"evidence"`
}

// Evidence says why a Result is what it is.
type Evidence struct {
	// MX are the hosts examined, in preference order, with their TLSA
	// records; MXAuthenticated is the AD bit of the MX answer.
	MX              []MXEvidence `json:"mx,omitempty"`
	MXAuthenticated bool         `json:"mx_authenticated"`
	// ADTrusted is false when the resolver is not on loopback, so that the
	// AD bit says nothing and DANE is not used.
	ADTrusted bool `json:"ad_trusted"`
	// MTASTS is the cached MTA-STS policy, if any, including a testing one.
	MTASTS *STSEvidence `json:"mta_sts,omitempty"`
	// STSFetchFailure is the policy fetch that failed at the last
	// resolution, if one did (for TLSRPT).
	STSFetchFailure *STSFetchFailure `json:"sts_fetch_failure,omitempty"`
	// Notes say why each source that did not give the answer did not
	// apply, and what went wrong on the way.
	Notes []string `json:"notes,omitempty"`
}

// MXEvidence is one MX host's DANE state.
type MXEvidence struct {
	Host string `json:"host"`
	// TLSA are the records at _25._tcp.<host>, "usage selector type data".
	TLSA []string `json:"tlsa,omitempty"`
	// Authenticated: the TLSA and address answers had the AD bit.
	Authenticated bool `json:"authenticated"`
	// Usable: authenticated, with at least one DANE-TA or DANE-EE record
	// of known parameters (RFC 7672 §3.1.3).
	Usable bool `json:"usable"`
	// STSMatch: the host matches the MTA-STS mx patterns (nil: no policy).
	STSMatch *bool  `json:"sts_match,omitempty"`
	Error    string `json:"error,omitempty"`
}

// STSEvidence is the MTA-STS policy in force.
type STSEvidence struct {
	ID      string    `json:"id"`
	Mode    string    `json:"mode"`
	MX      []string  `json:"mx"`
	MaxAge  int       `json:"max_age"`
	Fetched time.Time `json:"fetched"`
	Expires time.Time `json:"expires"`
	// Answer is what the policy answers in enforce mode; for a testing
	// policy, what enforce would answer.
	Answer string `json:"answer,omitempty"`
}
