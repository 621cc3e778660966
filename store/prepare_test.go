package store

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

// FuzzDecodeHexKey: decodeHexKey accepts what hex.DecodeString accepts
// for a 32-byte key, and decodes it the same.
func FuzzDecodeHexKey(f *testing.F) {
	f.Add(strings.Repeat("ab", 32))
	f.Add(strings.Repeat("AB", 32))
	f.Add(strings.Repeat("0", 63) + "g")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		var got [32]byte
		ok := decodeHexKey(got[:], s)
		want, err := hex.DecodeString(s)
		wantOK := err == nil && len(want) == 32
		if ok != wantOK || ok && !bytes.Equal(got[:], want) {
			t.Fatalf("decodeHexKey(%q) = %x, %v; hex.DecodeString: %x, %v", s, got, ok, want, err)
		}
	})
}

// TestBoxTextNoAllocation: the repeated texts go into an interface without
// an allocation, and every text comes back unchanged.
func TestBoxTextNoAllocation(t *testing.T) {
	var sink any
	for _, s := range []string{"sent", "deferred", "verified", "TLSv1.3", "TLS_AES_256_GCM_SHA384", ""} {
		runtime := string([]byte(s)) // not a constant
		if n := testing.AllocsPerRun(100, func() { sink = boxText(runtime) }); n != 0 {
			t.Errorf("boxText(%q): %v allocations", s, n)
		}
		if sink != s {
			t.Errorf("boxText(%q) = %v", s, sink)
		}
	}
	for _, s := range []string{"ECDHE-RSA-AES256-GCM-SHA384", "sent ", "x"} {
		if got := boxText(s); got != s {
			t.Errorf("boxText(%q) = %v", s, got)
		}
	}
}

// TestPrepareSharedBuffers: the rows of a batch share one buffer for their
// keys and one string for their details, and each row still has its own.
func TestPrepareSharedBuffers(t *testing.T) {
	at := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	var ds []delivery.Delivery
	for i := range 3 {
		ds = append(ds, delivery.Delivery{Time: at.Add(time.Duration(i) * time.Second), QueueID: strings.Repeat("Q", i+1),
			Recipient: "u@a.example", Domain: "a.example", Relay: "mx.a.example[192.0.2.1]:25", Status: "sent",
			Key: strings.Repeat(string("0123456789abcdef"[i]), 64)})
	}
	rows, err := prepare(ds)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		sum, _ := hex.DecodeString(ds[i].Key)
		if want := appendStoredKey(nil, micros(ds[i].Time), sum); !bytes.Equal(r.key, want) || cap(r.key) != len(r.key) {
			t.Errorf("row %d: key %x (cap %d), want %x with no room to grow into the next", i, r.key, cap(r.key), want)
		}
		if want := string(appendDetail(nil, &ds[i])); r.detail != want {
			t.Errorf("row %d: detail %q, want %q", i, r.detail, want)
		}
	}
	// A host's suffix must not overwrite the next row's key.
	b := &Batch{rows: rows}
	b.forHost(7)
	if !bytes.Equal(rows[1].key[:storedKeyLen], appendStoredKey(nil, micros(ds[1].Time), mustHex(t, ds[1].Key))) {
		t.Errorf("row 1's key changed by row 0's host suffix: %x", rows[1].key)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
