package output

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"strconv"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// DeliveryJSON is the `deliveries --format jsonl` contract
// (ARCHITECTURE.md); keep the field names and order exact.
type DeliveryJSON struct {
	Time        string          `json:"time"`
	QueueID     string          `json:"queue_id"`
	Recipient   string          `json:"recipient"`
	Domain      string          `json:"domain"`
	Relay       string          `json:"relay"`
	Status      delivery.Status `json:"status"`
	DSN         string          `json:"dsn"`
	TLS         *bool           `json:"tls"`
	TLSTrust    delivery.Trust  `json:"tls_trust"`
	TLSProtocol string          `json:"tls_protocol"`
	TLSCipher   string          `json:"tls_cipher"`
	Fallback    bool            `json:"fallback"`
	TLSFeature  string          `json:"tls_feature"` // Postfix 3.11's tls= value as logged, or ""
	Internal    bool            `json:"internal"`    // a hop inside the host (content filter, local LMTP)
	Host        string          `json:"host"`        // the fleet host that stored it (--host of run, follow, import)
}

// NewDeliveryJSON is the JSON Lines view of d.
func NewDeliveryJSON(d delivery.Delivery) DeliveryJSON {
	return DeliveryJSON{
		Time: d.Time.UTC().Format(time.RFC3339), QueueID: d.QueueID, Recipient: d.Recipient,
		Domain: d.Domain, Relay: d.Relay, Status: d.Status, DSN: d.DSN, TLS: d.TLS,
		TLSTrust: d.TLSTrust, TLSProtocol: d.TLSProtocol, TLSCipher: d.TLSCipher, Fallback: d.Fallback,
		TLSFeature: d.TLSFeature, Internal: d.Internal, Host: d.Host,
	}
}

// DeliveryCSVHeader is the header of `deliveries --format csv`: the
// fields of DeliveryJSON, in its order.
var DeliveryCSVHeader = []string{"time", "queue_id", "recipient", "domain", "relay", "status", "dsn", "tls", "tls_trust", "tls_protocol", "tls_cipher", "fallback", "tls_feature", "internal", "host"}

// DeliveryWriter writes deliveries one per line, as JSON Lines or CSV
// (cells escaped as a Table's are). It is the typed path of the largest
// output there is: one reused row of strings, no per-cell boxing.
type DeliveryWriter struct {
	csv *csv.Writer
	enc *json.Encoder
	row [15]string
}

// NewDeliveryWriter writes to w in format "csv" (header first) or
// "jsonl"; call Flush at the end.
func NewDeliveryWriter(w io.Writer, format string) (*DeliveryWriter, error) {
	if format != "csv" {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return &DeliveryWriter{enc: enc}, nil
	}
	dw := &DeliveryWriter{csv: csv.NewWriter(w)}
	return dw, dw.csv.Write(DeliveryCSVHeader)
}

// Write writes one delivery.
func (dw *DeliveryWriter) Write(d delivery.Delivery) error {
	if dw.enc != nil {
		return dw.enc.Encode(NewDeliveryJSON(d))
	}
	tls := ""
	if d.TLS != nil {
		tls = strconv.FormatBool(*d.TLS)
	}
	r := &dw.row
	r[0], r[1], r[2], r[3], r[4] = d.Time.UTC().Format(time.RFC3339), d.QueueID, d.Recipient, d.Domain, d.Relay
	r[5], r[6], r[7], r[8], r[9] = string(d.Status), d.DSN, tls, string(d.TLSTrust), d.TLSProtocol
	r[10], r[11], r[12], r[13], r[14] = d.TLSCipher, strconv.FormatBool(d.Fallback), d.TLSFeature, strconv.FormatBool(d.Internal), d.Host
	for i := range r {
		r[i] = Escape(r[i])
	}
	return dw.csv.Write(r[:])
}

// Flush writes out what the CSV writer buffers and reports its error.
func (dw *DeliveryWriter) Flush() error {
	if dw.csv == nil {
		return nil
	}
	dw.csv.Flush()
	return dw.csv.Error()
}
