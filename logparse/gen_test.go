package logparse

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/mailtls/mailtls/bench/gen"
)

func splitLines(b []byte) [][]byte {
	lines := bytes.Split(b, []byte("\n"))
	if n := len(lines); n > 0 && len(lines[n-1]) == 0 {
		lines = lines[:n-1]
	}
	return lines
}

func tlsString(b *bool) string {
	if b == nil {
		return "null"
	}
	return fmt.Sprint(*b)
}

// TestGeneratedStateSplit runs the restart property on a generated log,
// at a sample of split points.
func TestGeneratedStateSplit(t *testing.T) {
	var log bytes.Buffer
	if _, err := gen.Log(&log, gen.LogConfig{Seed: 5, Lines: 800, Domains: 20}); err != nil {
		t.Fatal(err)
	}
	checkSplits(t, Options{RefTime: time.Now(), Location: time.UTC}, splitLines(log.Bytes()), 13)
}
