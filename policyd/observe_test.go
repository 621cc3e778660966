package policyd

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is an Observer that counts replies.
type recorder struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *recorder) ObserveLookup(p Proto, o Origin, out Outcome, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if took < 0 {
		out = 99 // shows up as a wrong count
	}
	r.n[fmt.Sprintf("%s/%s/%s", p, o, out)]++
}

func (r *recorder) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := make(map[string]int, len(r.n))
	for k, v := range r.n {
		c[k] = v
	}
	return c
}

// TestObserver: every reply is reported once, with what decided it and
// its class, before the client can read it; a table not loaded yet is
// TEMP, and a framing error is reported too.
func TestObserver(t *testing.T) {
	rec := &recorder{n: map[string]int{}}
	srv := newTestServer(t, "may")
	srv.Observer = rec
	_, smAddr := listen(t, srv, "tcp", protoSocketmap)
	_, tcpAddr := listen(t, srv, "tcp", protoTCPTable)
	exchange := func(addr, req string, replies int) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		for range replies {
			if addr == tcpAddr {
				if _, err := br.ReadString('\n'); err != nil {
					t.Fatal(err)
				}
				continue
			}
			var n int
			if _, err := fmt.Fscanf(br, "%d:", &n); err != nil {
				t.Fatal(err)
			}
			if _, err := br.Discard(n + 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	exchange(smAddr, netstring("tlspolicy example.com")+netstring("tlspolicy a.corp.example")+
		netstring("tlspolicy nowhere.example")+netstring("othermap example.com")+netstring("tlspolicy a b"), 5)
	exchange(smAddr, "3x:", 1) // framing error: PERM, connection closed
	exchange(tcpAddr, "get example.com\nget nowhere.example\nput x\n", 3)
	srv.Table.SetDefault("")
	srv.Table.Store(NewSnapshot(testOverrides, ""))
	exchange(tcpAddr, "get nowhere.example\n", 1)
	srv.Table.Store(nil)
	exchange(smAddr, netstring("tlspolicy example.com"), 1)

	want := map[string]int{
		"socketmap/override/ok": 2, "socketmap/default/ok": 1, "socketmap/none/perm": 3, "socketmap/none/temp": 1,
		"tcp_table/override/ok": 1, "tcp_table/default/ok": 1, "tcp_table/none/temp": 1, "tcp_table/default/notfound": 1,
	}
	if got := rec.counts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("observed %v\nwant     %v", got, want)
	}
}

// TestObservedHotPathAllocs: with an Observer, answering still allocates
// nothing (the observer here allocates nothing either).
func TestObservedHotPathAllocs(t *testing.T) {
	srv := newTestServer(t, "may")
	var n countingObserver
	srv.Observer = &n
	bw := bufio.NewWriterSize(io.Discard, WriteBufSize)
	in := strings.NewReader("")
	br := bufio.NewReaderSize(in, ReadBufSize)
	var scratch []byte
	raw := netstring("tlspolicy a.b.corp.example")
	allocs := testing.AllocsPerRun(200, func() {
		in.Reset(raw)
		br.Reset(in)
		req, err := ReadNetstring(br, MaxQuery, &scratch)
		if err != nil {
			t.Fatal(err)
		}
		t0 := srv.startTimer()
		o, out := srv.answerSocketmap(bw, req, DefaultMapName)
		srv.observe(ProtoSocketmap, o, out, t0)
		bw.Flush()
	})
	if allocs != 0 || n == 0 {
		t.Errorf("%v allocations per observed request (observed %d), want 0", allocs, n)
	}
}

type countingObserver int

func (c *countingObserver) ObserveLookup(Proto, Origin, Outcome, time.Duration) { *c++ }

// BenchmarkAnswer is one socketmap request from read to buffered reply,
// without an Observer and with one (the Observer's own cost is
// metrics.BenchmarkObserveLookup).
func BenchmarkAnswer(b *testing.B) {
	for _, observed := range []bool{false, true} {
		b.Run(fmt.Sprintf("observed=%v", observed), func(b *testing.B) {
			srv := newTestServer(b, "may")
			if observed {
				srv.Observer = new(countingObserver)
			}
			bw := bufio.NewWriterSize(io.Discard, WriteBufSize)
			in := strings.NewReader("")
			br := bufio.NewReaderSize(in, ReadBufSize)
			var scratch []byte
			raw := netstring("tlspolicy a.b.corp.example")
			b.ReportAllocs()
			for b.Loop() {
				in.Reset(raw)
				br.Reset(in)
				req, _ := ReadNetstring(br, MaxQuery, &scratch)
				t0 := srv.startTimer()
				o, out := srv.answerSocketmap(bw, req, DefaultMapName)
				srv.observe(ProtoSocketmap, o, out, t0)
				bw.Flush()
			}
		})
	}
}

// TestOriginOf: an answer from a published source is counted under its
// source, not as the default.
func TestOriginOf(t *testing.T) {
	for _, tt := range []struct {
		r    Result
		want string
	}{
		{Result{Rule: RuleExact}, "override"},
		{Result{Rule: RuleWildcard}, "override"},
		{Result{Rule: RulePublished, Source: "dane"}, "dane"},
		{Result{Rule: RulePublished, Source: "mta-sts"}, "mta-sts"},
		{Result{Rule: RuleDefault}, "default"},
		{Result{Rule: RuleNotFound}, "default"},
	} {
		if got := originOf(tt.r).String(); got != tt.want {
			t.Errorf("originOf(%+v) = %s, want %s", tt.r, got, tt.want)
		}
	}
}
