package discover

import "time"

// HistoryDays is how far back `check` looks in our own delivery records.
const HistoryDays = 30

// History is what our own records say about a domain.
type History struct {
	Since      time.Time        `json:"since"`
	Deliveries int64            `json:"deliveries"`
	Encrypted  int64            `json:"encrypted"`
	Plaintext  int64            `json:"plaintext"`
	Unknown    int64            `json:"unknown"`
	Coverage   float64          `json:"coverage"`
	ByTrust    map[string]int64 `json:"by_trust"`
	// LastPlaintext is the newest delivery that went out without TLS.
	LastPlaintext *time.Time `json:"last_plaintext"`
}
