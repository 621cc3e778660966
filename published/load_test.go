package published

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// reusingStore hands every entry to fn in the same buffer, as a database
// driver may: Load must not keep it.
type reusingStore struct {
	MemStore
	entries [][2]string // domain, data
}

func (s *reusingStore) LoadPublished(_ context.Context, fn func(string, []byte) error) error {
	buf := make([]byte, 0, 4096)
	for _, e := range s.entries {
		buf = append(buf[:0], e[1]...)
		if err := fn(e[0], buf); err != nil {
			return err
		}
		for i := range buf {
			buf[i] = 'x'
		}
	}
	return nil
}

func TestLoadManyEntriesReusedBuffer(t *testing.T) {
	refresh := time.Now().Add(time.Hour).UTC()
	st := &reusingStore{}
	want := map[string]string{}
	var bad []string
	for i := range 2000 { // several decoding batches
		d := fmt.Sprintf("d%d.example", i)
		var data []byte
		switch {
		case i%500 == 7:
			data = []byte(`{"v":1,"result":{"source":"dane","policy":"bogus policy"}}`)
			bad = append(bad, d)
		case i%2 == 0:
			data, _ = json.Marshal(stored{V: 1, Result: Result{Source: SourceDANE, Policy: "dane-only"}, RefreshAt: refresh})
			want[d] = "dane-only"
		default:
			data, _ = json.Marshal(stored{V: 1, Result: Result{Source: SourceNone}, RefreshAt: refresh})
			want[d] = ""
		}
		st.entries = append(st.entries, [2]string{d, string(data)})
	}
	r, err := New(Config{DNS: newFakeDNS(t, false), Store: st})
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.Load(context.Background())
	if n != len(want) {
		t.Errorf("Load = %d entries, want %d", n, len(want))
	}
	if err == nil {
		t.Fatal("Load reported no error for the bad entries")
	}
	for _, d := range bad {
		if !strings.Contains(err.Error(), d+":") {
			t.Errorf("Load error does not name %s: %v", d, err)
		}
	}
	for d, p := range want {
		res, ok := r.Cached(d)
		if !ok || res.Policy != p || res.Domain != d {
			t.Fatalf("Cached(%s) = %+v, %v; want policy %q", d, res, ok, p)
		}
	}
}
