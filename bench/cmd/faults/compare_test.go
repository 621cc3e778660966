package main

import (
	"testing"
	"time"
)

func row(t, q, rcpt, tls string) string {
	return `{"time":"` + t + `","queue_id":"` + q + `","recipient":"` + rcpt + `","status":"sent","tls":` + tls + `}`
}

func TestCompare(t *testing.T) {
	a := row("2026-01-01T00:00:00Z", "A", "x@a.example", "true")
	b := row("2026-01-01T00:00:01Z", "B", "y@b.example", "true")
	bNull := row("2026-01-01T00:00:01Z", "B", "y@b.example", "null")
	c := row("2026-01-01T00:00:02Z", "C", "z@c.example", "false")
	want := map[string]int{a: 1, b: 1, c: 1}
	got := map[string]int{a: 2, bNull: 1} // a twice, b with other fields, c missing
	fc := &followCase{}
	compare(fc, want, got)
	if fc.lost != 1 || fc.dup != 1 || fc.differ != 1 {
		t.Fatalf("lost/dup/differ = %d/%d/%d, want 1/1/1", fc.lost, fc.dup, fc.differ)
	}
	fc = &followCase{}
	compare(fc, want, want)
	if fc.lost+fc.dup+fc.differ != 0 || len(fc.samples) != 0 {
		t.Fatalf("identical sets: lost/dup/differ = %d/%d/%d, samples %v", fc.lost, fc.dup, fc.differ, fc.samples)
	}
}

func TestHistQuantile(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.add(timeMicros(i))
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0.5, 500}, {0.99, 990}} {
		got := h.quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*1.13 {
			t.Errorf("quantile(%v) = %d, want %d within 13%%", c.q, got, c.want)
		}
	}
	if h.max.Load() != 1000 {
		t.Errorf("max = %d, want 1000", h.max.Load())
	}
}

func timeMicros(n int) time.Duration { return time.Duration(n) * time.Microsecond }
