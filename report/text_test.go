package report

import (
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/store"
)

// TestTrustLine: strongest first (delivery.Trusts reversed), then other
// keys by count, escaped.
func TestTrustLine(t *testing.T) {
	got := TrustLine(map[string]int64{"anonymous": 3, "verified": 1, "trusted": 5000, "odd\x1b": 7, "untrusted": 0})
	if want := `verified 1  trusted 5,000  anonymous 3  odd\x1b 7  untrusted 0`; got != want {
		t.Errorf("TrustLine = %q, want %q", got, want)
	}
	if got := TrustLine(nil); got != "-" {
		t.Errorf("TrustLine(nil) = %q, want -", got)
	}
}

func TestWriteSummaryCSV(t *testing.T) {
	s := store.Summary{Deliveries: 10, Encrypted: 6, Plaintext: 2, Unknown: 2, Coverage: 0.75,
		ByTrust: map[string]int64{"verified": 2, "trusted": 4}, ByProtocol: map[string]int64{"TLSv1.3": 6}, Domains: 3}
	var b strings.Builder
	if err := WriteSummary(&b, "csv", store.Window{}, s); err != nil {
		t.Fatal(err)
	}
	want := "metric,value\ndeliveries,10\nencrypted,6\nplaintext,2\nunknown,2\nfallback,0\ncoverage,0.7500\n" +
		"by_trust.trusted,4\nby_trust.verified,2\nby_protocol.TLSv1.3,6\ndeferred,0\ntls_deferred,0\nbounced,0\n" +
		"domains,3\ndomains_all_tls,0\ndomains_any_plaintext,0\ninternal,0\n"
	if b.String() != want {
		t.Errorf("csv:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWriteSummaryText(t *testing.T) {
	s := store.Summary{Deliveries: 1200, Encrypted: 900, Plaintext: 300, Coverage: 0.75, Internal: 4, DomainsAnyPlaintext: 1,
		ByTrust: map[string]int64{"untrusted": 100, "verified": 800}}
	var b strings.Builder
	if err := WriteSummary(&b, "table", store.Window{Domain: "example.com"}, s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"TLS coverage, - to -, domain example.com\n\nDelivered (sent)  1,200\n",
		"  encrypted         900  75.0% of known\n  plaintext         300  25.0% of known\n",
		"\nTrust      verified 800  untrusted 100\nProtocol   -\n",
		"\nInternal hops: 4, not counted above",
		"\nWho got plaintext:",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary text lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "Expired") {
		t.Errorf("an Expired line with none expired:\n%s", b.String())
	}
}

func TestWriteDryRun(t *testing.T) {
	var b strings.Builder
	WriteDryRun(&b, "example.com", "verify", 30, store.DryRunResult{Deliveries: 1500, Plaintext: 1, Unverified: 20, WouldDefer: 21})
	want := "In the last 30 days, 1,500 deliveries to example.com; 1 was plaintext and 20 used an unverified certificate: 21 would have been deferred.\n" +
		"Nothing changed (--dry-run).\n"
	if b.String() != want {
		t.Errorf("dry run:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestStatusFollowers: an unreadable checkpoint and a journald cursor are
// notes, not stale; a host is stale when one of its followers is.
func TestStatusFollowers(t *testing.T) {
	at := now.Add(-time.Hour)
	cps := []store.CheckpointInfo{
		{Host: "mx1", Source: "file:/var/log/mail.log", Data: []byte("{bad"), Updated: at},
		{Host: "mx2", Source: "journald", Data: logparse.Checkpoint{Cursor: "s=1"}.Marshal(), Updated: at},
	}
	fs := followers(cps, now, time.Minute, "")
	if len(fs) != 2 || !strings.HasPrefix(fs[0].Note, "checkpoint unreadable: ") || fs[0].Behind != -1 || fs[0].Lag != 3600 ||
		fs[1].Note != "journald: position is a cursor" || fs[1].Stale {
		t.Fatalf("followers: %+v", fs)
	}
	if got := followers(cps, now, time.Minute, "mx2"); len(got) != 1 || got[0].Host != "mx2" {
		t.Errorf("followers of mx2: %+v", got)
	}
	fs[1].Stale = true
	hs := hosts([]store.HostInfo{{Name: "mx1", Counted: 5, LastCommit: at}, {Name: "mx2"}}, fs, now, "")
	if len(hs) != 2 || hs[0].Stale || hs[0].Lag != 3600 || !hs[1].Stale || hs[1].Lag != -1 || hs[1].LastCommit != "" {
		t.Errorf("hosts: %+v", hs)
	}
	st := &Status{Store: store.Status{Path: "/db\x1b", Bytes: 2048}, Hosts: hs, Followers: fs, PolicyWarnings: []string{"w\r"}}
	if f := st.StaleFollower(); f == nil || f.Host != "mx2" {
		t.Errorf("StaleFollower = %+v, want mx2's", f)
	}
	var b strings.Builder
	if err := st.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`Database    /db\x1b (2.0 KiB)` + "\n", "Deliveries  none recorded yet\n",
		"Host        mx2: 0 deliveries, no follower commit, STALE\n", "Follower    mx2 journald: last commit ", `Warning     w\x0d` + "\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status text lacks %q:\n%s", want, b.String())
		}
	}
}
