package store

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// TestInternalHops: a content filter's hop (to 127.0.0.1:10024) and the
// message's outbound delivery after re-injection (another queue id) are
// two deliveries; the report counts the outbound one, and the hop on its
// own line.
func TestInternalHops(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	at := t0.Add(-30 * time.Hour)
	hop := testDelivery(1, at, "gmail.com")
	hop.QueueID, hop.Relay, hop.Internal = "AAA", "127.0.0.1[127.0.0.1]:10024", true
	hop.TLS, hop.TLSTrust, hop.TLSProtocol, hop.TLSCipher = bptr(false), "", "", ""
	lmtp := testDelivery(2, at.Add(time.Second), "local.example")
	lmtp.Relay, lmtp.Internal = "mail.local.example[private/dovecot-lmtp]", true
	lmtp.TLS, lmtp.TLSTrust, lmtp.TLSProtocol, lmtp.TLSCipher = bptr(false), "", "", ""
	out := testDelivery(3, at.Add(2*time.Second), "gmail.com")
	out.QueueID, out.TLSFeature = "BBB", "may:none"
	if _, err := s.AddDeliveries(ctx, []delivery.Delivery{hop, lmtp, out}); err != nil {
		t.Fatal(err)
	}
	for _, w := range []Window{{}, {Since: at.Add(-time.Minute), Until: at.Add(time.Minute)}, {Domain: "gmail.com"}, {Since: t0.Add(-48 * time.Hour), Until: t0}} {
		sum, err := s.Summary(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		wantInternal := int64(2)
		if w.Domain != "" {
			wantInternal = 1
		}
		if sum.Deliveries != 1 || sum.Encrypted != 1 || sum.Plaintext != 0 || sum.Coverage != 1 || sum.Internal != wantInternal || sum.Domains != 1 {
			t.Errorf("Summary(%+v) = %+v; want the one outbound delivery, encrypted, and %d internal hops apart", w, sum, wantInternal)
		}
		w.IncludeInternal = true
		sum, err = s.Summary(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		if sum.Deliveries != 1+wantInternal || sum.Plaintext != wantInternal || sum.Internal != wantInternal {
			t.Errorf("Summary(%+v, include internal) = %+v; want the hops counted too", w, sum)
		}
	}
	rows, err := s.ReportBy(ctx, Window{}, "relay", 0)
	if err != nil || len(rows) != 1 || rows[0].Key != "mx.gmail.com" {
		t.Errorf("ReportBy(relay) = %+v, %v; want the outbound relay only", rows, err)
	}
	var got []delivery.Delivery
	if err := s.Deliveries(ctx, Filter{Domain: "gmail.com"}, func(d delivery.Delivery) error { got = append(got, d); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[0].Internal || got[1].Internal || got[1].TLSFeature != "may:none" || got[0].TLSFeature != "" {
		t.Errorf("Deliveries(gmail.com) = %+v; want the hop (internal) and the outbound delivery (tls_feature may:none)", got)
	}
}

// TestInternalIndexCovered: on a new database the raw-row part of the
// per-domain counts, which now leaves internal hops out, is still answered
// from deliveries_time alone, as before the column existed.
func TestInternalIndexCovered(t *testing.T) {
	s, _ := openTest(t)
	r, _ := s.reader()
	var idx string
	if err := r.QueryRow(`SELECT sql FROM sqlite_master WHERE name = 'deliveries_time'`).Scan(&idx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(idx, "internal") {
		t.Fatalf("deliveries_time of a new database: %s; want it to hold internal", idx)
	}
	p, _ := newPlan(Window{Since: t0.Add(-50 * time.Hour), Until: t0})
	for _, q := range []func() (string, []any){
		func() (string, []any) { return domainCountsQuery(p, "day") },
		func() (string, []any) { return keyedSentQuery(p, "domain", "day") },
	} {
		sqlText, args := q()
		plan := explain(t, r, sqlText, args)
		if !strings.Contains(plan, "COVERING INDEX deliveries_time") {
			t.Errorf("query plan reads the table for raw rows:\n%s", plan)
		}
	}
}

func explain(t *testing.T, r *sql.DB, q string, args []any) string {
	t.Helper()
	rows, err := r.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		b.WriteString(detail + "\n")
	}
	return b.String()
}
