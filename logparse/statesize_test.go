package logparse

import (
	"fmt"
	"strings"
	"testing"
)

// checkpointSize is the size of the checkpoint row a follower would store
// for c's state, with a long path.
func checkpointSize(t *testing.T, c *Correlator) int {
	t.Helper()
	state, err := c.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	cp := Checkpoint{Path: "/" + strings.Repeat("p", 4000), Dev: 1 << 60, Ino: 1 << 60, Offset: 1 << 60,
		FirstLineHash: strings.Repeat("a", 64), State: state}
	return len(cp.Marshal())
}

// TestStateFieldCaps: relays longer than a host name plus an address
// (255 + 64 bytes) and protocols or ciphers over 128 bytes are not Postfix
// records; they must not reach the correlator state (issue #14 item 7:
// 100 lines with 500 KB relays made a 50 MB checkpoint).
func TestStateFieldCaps(t *testing.T) {
	c := NewCorrelator(goldenOptions(""))
	big := strings.Repeat("r", 500<<10)
	for i := 0; i < 50; i++ {
		c.Feed([]byte(fmt.Sprintf("Nov 28 10:00:00 h postfix/smtp[%d]: Trusted TLS connection established to %s[192.0.2.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", 100+i, big)))
		c.Feed([]byte(fmt.Sprintf("Nov 28 10:00:00 h postfix/smtp[%d]: SSL_connect error to %s[192.0.2.1]:25: -1", 200+i, big)))
	}
	c.Feed([]byte("Nov 28 10:00:00 h postfix/smtp[1]: Trusted TLS connection established to mx.example[192.0.2.1]:25: " + strings.Repeat("P", 129) + " with cipher " + strings.Repeat("C", 129) + " (256/256 bits)"))
	if n := checkpointSize(t, c); n > 64<<10 {
		t.Errorf("checkpoint is %d bytes after 100 lines with 500 KB relays", n)
	}
	if st := c.Stats(); st.TLSLines != 0 || len(c.procs) != 0 {
		t.Errorf("stats %+v, %d sessions: lines with over-long fields must not open sessions", st, len(c.procs))
	}
}

// TestStateSizeBound fills the state with as many sessions and handshake
// failures as the caps allow, every field at its longest, and checks that
// the checkpoint stays under 1 MiB while recent sessions still correlate.
func TestStateSizeBound(t *testing.T) {
	c := NewCorrelator(goldenOptions(""))
	relay := func(i int) string {
		h := fmt.Sprintf("%d.", i) + strings.Repeat("h", 255)
		n := fmt.Sprint(i)
		return h[:255] + "[" + strings.Repeat("f", 59-len(n)) + n + "]:25"
	}
	tag := strings.Repeat("t", maxTagLen-5) + "/smtp"
	proto, cipher := strings.Repeat("P", maxProtoLen), strings.Repeat("C", maxCipherLen)
	max := 0
	for i := 0; i < 30000; i++ {
		r := relay(i)
		if len(r) != maxRelayLen {
			t.Fatalf("relay of %d bytes", len(r))
		}
		ds := feedStrings(c,
			fmt.Sprintf("Nov 28 10:00:00 h %s[%d]: SSL_connect error to %s: -1", tag, 1000000+i, r),
			fmt.Sprintf("Nov 28 10:00:00 h %s[%d]: %020d: to=<b@b.example>, relay=%s, delay=1, delays=0/0/0/1, dsn=4.7.5, status=deferred (Cannot start TLS: handshake failure)", tag, 1000000+i, i, r),
			fmt.Sprintf("Nov 28 10:00:00 h %s[%d]: SSL_connect error to %s: -1", tag, 1000000+i, r),
			fmt.Sprintf("Nov 28 10:00:00 h %s[%d]: Trusted TLS connection established to %s: %s with cipher %s (256/256 bits)", tag, 2000000+i, r, proto, cipher),
		)
		if len(ds) != 1 {
			t.Fatalf("round %d: %d deliveries", i, len(ds))
		}
		if i%1000 == 999 {
			max = maxInt(max, checkpointSize(t, c))
		}
	}
	if max >= 1<<20 {
		t.Errorf("checkpoint grew to %d bytes", max)
	}
	t.Logf("largest checkpoint: %d bytes; %d sessions, %d failures kept", max, len(c.procs), len(c.failed))
	// The newest session and failure are still known.
	r := relay(29999)
	ds := feedStrings(c,
		fmt.Sprintf("Nov 28 10:00:01 h %s[%d]: %020d: to=<a@a.example>, relay=%s, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)", tag, 2000000+29999, 1, r),
		fmt.Sprintf("Nov 28 10:00:01 h postfix/smtp[9]: %020d: to=<b@b.example>, relay=%s, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)", 29999, r),
	)
	if len(ds) != 2 || ds[0].TLS == nil || !*ds[0].TLS || ds[0].TLSCipher != cipher || !ds[1].Fallback {
		t.Errorf("recent state forgotten: %+v", ds)
	}
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// TestOversizedStateShrinks: a state saved before the budgets existed, far
// over them, is cut down to them when it is restored, newest entries kept.
func TestOversizedStateShrinks(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"v":1,"seq":100000,"stats":{"Lines":0,"Deliveries":0,"Skipped":0,"TLSLines":0},"procs":[`)
	for i := 0; i < 4000; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"key":"postfix/smtp[%d]","open":true,"relay":"%s","trust":"trusted","proto":"TLSv1.3","cipher":"X","used":%d}`, i, strings.Repeat("r", 300), i+1)
	}
	b.WriteString(`],"failed":[`)
	for i := 0; i < 8000; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"qid":"%010d","host":"%s","used":%d}`, i, strings.Repeat("h", 200), 50000+i)
	}
	b.WriteString(`]}`)
	c := NewCorrelator(goldenOptions(""))
	if err := c.UnmarshalState([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	if n := checkpointSize(t, c); n >= 1<<20 {
		t.Errorf("restored %d-byte state marshals to a %d-byte checkpoint", b.Len(), n)
	}
	if _, ok := c.procs["postfix/smtp[3999]"]; !ok {
		t.Error("the newest session was dropped")
	}
	if _, ok := c.failed[failID{"0000007999", strings.Repeat("h", 200)}]; !ok {
		t.Error("the newest failure was dropped")
	}
}
