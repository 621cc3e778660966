package logparse

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n, len(c.b))
	copy(p, c.b[:k])
	c.b = c.b[k:]
	return k, nil
}

type readLine struct {
	text    string
	tooLong bool
}

func readAllLines(t testing.TB, r io.Reader) []readLine {
	t.Helper()
	lr := NewLineReader(r)
	var out []readLine
	for i := 0; ; i++ {
		line, tooLong, err := lr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if i > 1<<20 {
			t.Fatal("no end")
		}
		out = append(out, readLine{string(line), tooLong})
	}
}

// refLines is what LineReader must return: lines at "\n", a CR before it
// dropped, the last line without newline included, lines over MaxLineLen
// (counted without the newline) as too long with their start.
func refLines(in []byte) []readLine {
	var out []readLine
	parts := bytes.Split(in, []byte("\n"))
	if len(parts[len(parts)-1]) == 0 {
		parts = parts[:len(parts)-1]
	}
	for _, p := range parts {
		if len(p) > MaxLineLen {
			out = append(out, readLine{string(p[:headLen]), true})
			continue
		}
		out = append(out, readLine{string(trimCR(p)), false})
	}
	return out
}

func TestLineReader(t *testing.T) {
	long := bytes.Repeat([]byte("L"), MaxLineLen+1)
	exact := bytes.Repeat([]byte("E"), MaxLineLen)
	for name, in := range map[string][]byte{
		"plain":          []byte("a\nb\n"),
		"no final nl":    []byte("a\nb"),
		"crlf":           []byte("a\r\nb\r\n\r\n"),
		"empty lines":    []byte("\n\n\n"),
		"long then next": append(append(bytes.Clone(long), '\n'), "next\n"...),
		"long at end":    append([]byte("first\n"), long...),
		"exact cap":      append(append(bytes.Clone(exact), '\n'), exact...),
		"two long":       append(append(append(bytes.Clone(long), '\n'), long...), "\nz"...),
	} {
		want := refLines(in)
		for _, chunk := range []int{1, 7, 4096, 1 << 20} {
			if chunk == 1 && len(in) > 1<<10 {
				continue
			}
			got := readAllLines(t, &chunkReader{b: in, n: chunk})
			if len(got) != len(want) {
				t.Fatalf("%s, chunks of %d: %d lines, want %d", name, chunk, len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("%s, chunks of %d: line %d = %.40q %v, want %.40q %v", name, chunk, i, got[i].text, got[i].tooLong, want[i].text, want[i].tooLong)
				}
			}
		}
	}
}

func TestLineReaderError(t *testing.T) {
	boom := errors.New("boom")
	lr := NewLineReader(io.MultiReader(bytes.NewReader([]byte("a\nb")), &errReader{boom}))
	var got []string
	for {
		line, _, err := lr.Next()
		if err != nil {
			if err != boom {
				t.Fatalf("err %v", err)
			}
			break
		}
		got = append(got, string(line))
	}
	if len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("lines %q", got)
	}
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }

// TestSkipLineQuoted: the first skipped line is kept, quoted with control
// characters escaped, for the summary and the follower's log.
func TestSkipLineQuoted(t *testing.T) {
	c := NewCorrelator(Options{})
	if _, ok := c.FirstSkipped(); ok {
		t.Fatal("skipped before any line")
	}
	c.Feed([]byte("Nov 28 16:00:00 host postfix/smtp[1]: fine"))
	c.Feed([]byte("\x1b[31mred\x00\xff"))
	c.SkipLine([]byte("later"))
	q, ok := c.FirstSkipped()
	if !ok || q != `"\x1b[31mred\x00\xff"` {
		t.Errorf("FirstSkipped = %s, %v", q, ok)
	}
	c2 := NewCorrelator(Options{})
	c2.SkipLine(bytes.Repeat([]byte("x"), 1000))
	if q, _ := c2.FirstSkipped(); len(q) > quoteMax+60 || !bytes.Contains([]byte(q), []byte("longer than")) {
		t.Errorf("FirstSkipped = %s", q)
	}
	if s := c2.Stats(); s.Lines != 1 || s.Skipped != 1 {
		t.Errorf("stats %+v", s)
	}
}

// FuzzLineReader compares LineReader with refLines for any input and any
// chunking (with a small cap so that long lines are cheap to find).
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("a\nb\r\nc"), 3)
	f.Add([]byte("\n\n\r"), 1)
	f.Add(bytes.Repeat([]byte("x\n"), 100), 5)
	f.Fuzz(func(t *testing.T, in []byte, chunk int) {
		if chunk <= 0 || chunk > 1<<16 {
			chunk = 1 + chunk&0xff
		}
		const max = 16
		lr := &LineReader{r: &chunkReader{b: in, n: chunk}, sp: newLineSplitter(max), buf: make([]byte, 64)}
		var got []readLine
		for {
			line, tooLong, err := lr.Next()
			if err == io.EOF {
				break
			}
			got = append(got, readLine{string(line), tooLong})
		}
		parts := bytes.Split(in, []byte("\n"))
		if len(parts[len(parts)-1]) == 0 {
			parts = parts[:len(parts)-1]
		}
		if len(got) != len(parts) {
			t.Fatalf("%d lines, want %d", len(got), len(parts))
		}
		for i, p := range parts {
			want := readLine{string(trimCR(p)), false}
			if len(p) > max {
				want = readLine{string(p[:min(len(p), headLen)]), true}
			}
			if got[i] != want {
				t.Fatalf("line %d = %q %v, want %q %v", i, got[i].text, got[i].tooLong, want.text, want.tooLong)
			}
		}
	})
}
