package harness

import (
	"bufio"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestInt(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -12345: "-12,345"} {
		if got := Int(in); got != want {
			t.Errorf("Int(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestReadNetstring(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("6:OK may,9:NOTFOUND ,3:abc;"))
	for _, want := range []string{"OK may", "NOTFOUND "} {
		got, err := ReadNetstring(br, 100)
		if err != nil || got != want {
			t.Fatalf("ReadNetstring = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := ReadNetstring(br, 100); err == nil {
		t.Fatal("ReadNetstring accepted a netstring without its trailing comma")
	}
	if _, err := ReadNetstring(bufio.NewReader(strings.NewReader("200:x,")), 100); err == nil {
		t.Fatal("ReadNetstring accepted a netstring over the limit")
	}
}
