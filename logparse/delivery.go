package logparse

import "time"

// Stats counts what a Correlator has seen.
type Stats struct {
	Lines      int64 // lines fed
	Deliveries int64 // deliveries returned
	Skipped    int64 // lines without a parseable header (garbage, truncated)
	TLSLines   int64 // TLS summary lines from smtp/lmtp clients
}

// Options configure a Correlator.
type Options struct {
	// RefTime is used to infer the year of traditional syslog stamps,
	// which carry none: usually the file's mtime, or now. Zero means now.
	RefTime time.Time
	// Location is the zone of traditional syslog stamps; nil means time.Local.
	Location *time.Location
}
