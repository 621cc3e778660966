package output

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"mx.example.com[192.0.2.1]:25": "mx.example.com[192.0.2.1]:25",
		"a\x1b[2Jb":                    `a\x1b[2Jb`,
		"line\r\nnext\ttab\x7f":        `line\x0d\x0anext\x09tab\x7f`,
		"caf\u00e9 \u4e2d":             "caf\u00e9 \u4e2d",
		"c1 \u009b31m":                 `c1 \u009b31m`,
		"raw \x9b31m":                  `raw \x9b31m`,
		"bidi \u202egnp.exe":           `bidi \u202egnp.exe`,
		`back\slash`:                   `back\slash`,
		"":                             "",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTableText(t *testing.T) {
	tb := NewTable("KEY", "N", "NOTE").AlignRight(1)
	tb.Add("a", "1", "")
	tb.Add("long-key\x1b", "1,000", "x")
	tb.Add("é", "22") // short row: the missing cell is empty
	var b strings.Builder
	if err := tb.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	// Column widths 12 (the escaped key), 5 and 4, two blanks between.
	want := "KEY" + strings.Repeat(" ", 9+2+4) + "N  NOTE\n" +
		"a" + strings.Repeat(" ", 11+2+4) + "1\n" +
		`long-key\x1b  1,000  x` + "\n" +
		"é" + strings.Repeat(" ", 11+2+3) + "22\n"
	if b.String() != want {
		t.Errorf("text table:\n%s\nwant:\n%s", b.String(), want)
	}
	if tb.Len() != 3 {
		t.Errorf("Len = %d, want 3", tb.Len())
	}
}

func TestTableCSV(t *testing.T) {
	tb := NewTable("key", "value")
	tb.Add("a,b", "say \"hi\"")
	tb.Add("c\r\n", "")
	var b strings.Builder
	if err := tb.Write(&b, "csv"); err != nil {
		t.Fatal(err)
	}
	want := "key,value\n\"a,b\",\"say \"\"hi\"\"\"\n" + `c\x0d\x0a,` + "\n"
	if b.String() != want {
		t.Errorf("csv:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestJSON(t *testing.T) {
	var b strings.Builder
	if err := JSON(&b, map[string]any{"a": "<b>", "n": 1}); err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"a\": \"<b>\",\n  \"n\": 1\n}\n"; b.String() != want {
		t.Errorf("JSON = %q, want %q", b.String(), want)
	}
}

func TestSmallFormats(t *testing.T) {
	for got, want := range map[string]string{
		Itoa(-12345): "-12345", Pct(0.12345): "12.3%", Pct(1): "100.0%",
		Truncate("abcdef", 4): "abc…", Truncate("abc", 3): "abc", Truncate("ééé", 2): "é…",
		Time(time.Time{}): "-",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func testDelivery() delivery.Delivery {
	yes := true
	return delivery.Delivery{Time: time.Date(2026, 11, 30, 12, 0, 0, 0, time.FixedZone("x", 3600)), QueueID: "Q1\x1b",
		Recipient: "a@example.com", Domain: "example.com", Relay: "mx.example.com[192.0.2.1]:25", Status: delivery.Sent,
		DSN: "2.0.0", TLS: &yes, TLSTrust: delivery.Verified, TLSProtocol: "TLSv1.3", TLSCipher: "TLS_AES_256_GCM_SHA384",
		Internal: true, Host: "mx1"}
}

func TestDeliveryWriterCSV(t *testing.T) {
	var b bytes.Buffer
	dw, err := NewDeliveryWriter(&b, "csv")
	if err != nil {
		t.Fatal(err)
	}
	d := testDelivery()
	if err := dw.Write(d); err != nil {
		t.Fatal(err)
	}
	d.TLS, d.QueueID = nil, "Q2"
	if err := dw.Write(d); err != nil {
		t.Fatal(err)
	}
	if err := dw.Flush(); err != nil {
		t.Fatal(err)
	}
	want := strings.Join(DeliveryCSVHeader, ",") + "\n" +
		`2026-11-30T11:00:00Z,Q1\x1b,a@example.com,example.com,mx.example.com[192.0.2.1]:25,sent,2.0.0,true,verified,TLSv1.3,TLS_AES_256_GCM_SHA384,false,,true,mx1` + "\n" +
		`2026-11-30T11:00:00Z,Q2,a@example.com,example.com,mx.example.com[192.0.2.1]:25,sent,2.0.0,,verified,TLSv1.3,TLS_AES_256_GCM_SHA384,false,,true,mx1` + "\n"
	if b.String() != want {
		t.Errorf("csv:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestDeliveryWriterJSONL(t *testing.T) {
	var b bytes.Buffer
	dw, err := NewDeliveryWriter(&b, "jsonl")
	if err != nil {
		t.Fatal(err)
	}
	d := testDelivery()
	d.Recipient = "<x>@example.com"
	if err := dw.Write(d); err != nil {
		t.Fatal(err)
	}
	if err := dw.Flush(); err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-11-30T11:00:00Z","queue_id":"Q1\u001b","recipient":"<x>@example.com","domain":"example.com",` +
		`"relay":"mx.example.com[192.0.2.1]:25","status":"sent","dsn":"2.0.0","tls":true,"tls_trust":"verified",` +
		`"tls_protocol":"TLSv1.3","tls_cipher":"TLS_AES_256_GCM_SHA384","fallback":false,"tls_feature":"","internal":true,"host":"mx1"}` + "\n"
	if b.String() != want {
		t.Errorf("jsonl:\n%s\nwant:\n%s", b.String(), want)
	}
	var back DeliveryJSON
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back.Host != "mx1" {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

// BenchmarkDeliveryWriterCSV is the hot path of `deliveries --format csv`.
func BenchmarkDeliveryWriterCSV(b *testing.B) {
	dw, err := NewDeliveryWriter(io.Discard, "csv")
	if err != nil {
		b.Fatal(err)
	}
	d := testDelivery()
	d.QueueID = "4ZxQ1B2C3D"
	b.ReportAllocs()
	for b.Loop() {
		if err := dw.Write(d); err != nil {
			b.Fatal(err)
		}
	}
}
