package logparse

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/delivery"
)

// jrExpect returns the verdicts the forged.json fixture expects of each
// entry (its TEST_EXPECT field): with Units set, the second of
// "believed;unit".
func jrExpect(t *testing.T, entries []jrEntry, units bool) []string {
	t.Helper()
	out := make([]string, len(entries))
	for i, e := range entries {
		var m map[string]any
		if err := json.Unmarshal([]byte(e.line), &m); err != nil {
			t.Fatal(err)
		}
		exp, _ := m["TEST_EXPECT"].(string)
		if exp == "" {
			t.Fatalf("fixture entry %d has no TEST_EXPECT", i)
		}
		v := strings.Split(exp, ";")
		out[i] = v[0]
		if units && len(v) > 1 {
			out[i] = v[1]
		}
	}
	return out
}

// TestJournalTrust follows a journal in which local users and other
// processes forge Postfix smtp entries: only the entries from Postfix's
// smtp/lmtp (by _UID and _COMM, and _SYSTEMD_UNIT when units are given)
// may make deliveries, every other one is skipped and counted by reason,
// and sessions are keyed by _PID, not by the sender's SYSLOG_PID.
func TestJournalTrust(t *testing.T) {
	fake := jrBuildFake(t)
	fixture, entries := jrFixture(t, "forged.json")
	for _, units := range []bool{false, true} {
		t.Run(map[bool]string{false: "no-units", true: "units"}[units], func(t *testing.T) {
			expect := jrExpect(t, entries, units)
			db := newFollowDB()
			lb, log := newLogBuffer()
			j := jrNew(t, fake, fixture)
			j.Logger = log
			if units {
				j.Trust.Units = []string{"postfix@-.service", "postfix.service"}
			}
			r := jrStart(t, j, db, Checkpoint{})
			db.waitCursor(t, entries[len(entries)-1].cursor)
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}

			// What a correlator makes of the believed entries alone.
			c := flNewCorrelator()
			var want []delivery.Delivery
			var wantSkips JournalSkips
			for i, e := range entries {
				if expect[i] == "believed" {
					want = append(want, c.Feed([]byte(e.line))...)
					continue
				}
				found := false
				for v := JournalNoUID; v <= JournalAmbiguous; v++ {
					if v.String() == expect[i] {
						wantSkips.Add(v)
						found = true
					}
				}
				if !found {
					t.Fatalf("fixture entry %d: unknown TEST_EXPECT %q", i, expect[i])
				}
			}
			got := db.deliveries()
			flCompare(t, got, want)
			for _, d := range got {
				if strings.HasSuffix(d.Recipient, "@victim.example") {
					t.Errorf("forged delivery stored: %+v", d)
				}
			}
			if s := j.Skipped(); s != wantSkips {
				t.Errorf("skipped %v, want %v", s, wantSkips)
			}
			if wantSkips.Total() < 4 {
				t.Fatalf("fixture skips only %v", wantSkips)
			}
			for v := JournalNoUID; v <= JournalAmbiguous; v++ {
				if wantSkips.Count(v) > 0 && lb.count(" reason="+v.String()+" ") != 1 {
					t.Errorf("want exactly one log line for the first %s skip; log:\n%s", v, lb.buf.String())
				}
			}
			if lb.count("journal entries skipped as not from Postfix") == 0 || lb.count("by_reason=") == 0 {
				t.Errorf("skip totals not logged:\n%s", lb.buf.String())
			}

			// carol's entries (postfix-out/smtp as root) carry SYSLOG_PIDs
			// that differ from each other and from _PID: correlated by
			// _PID, her delivery has the TLS of the line before it.
			var carol *delivery.Delivery
			for i := range got {
				if got[i].Recipient == "carol@example.org" {
					carol = &got[i]
				}
			}
			if carol == nil {
				t.Fatal("carol's delivery (smtp running as root) is missing")
			}
			if carol.PID != 5002 || carol.TLS == nil || !*carol.TLS || carol.TLSTrust != delivery.Untrusted {
				t.Errorf("carol: pid %d, tls %v %q; want pid 5002 (the _PID) and the untrusted TLS session of that pid", carol.PID, carol.TLS, carol.TLSTrust)
			}
		})
	}
}

func TestJournalTrustCheck(t *testing.T) {
	trust := JournalTrust{UIDs: []uint32{102}}
	units := JournalTrust{UIDs: []uint32{102}, Units: []string{"postfix@-.service"}}
	const cur = `"__CURSOR":"c","__REALTIME_TIMESTAMP":"1",`
	for _, tc := range []struct {
		trust JournalTrust
		line  string
		want  JournalVerdict
	}{
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"102","_COMM":"smtp","_PID":"1"}`, JournalBelieved},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/relay/smtp","_UID":"0","_COMM":"smtp"}`, JournalBelieved},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix-out/lmtp","_UID":"102","_COMM":"lmtp"}`, JournalBelieved},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"102"}`, JournalBelieved},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"1000","_COMM":"smtp"}`, JournalBadUID},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"102","_COMM":"logger"}`, JournalBadComm},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"102","_COMM":"lmtp"}`, JournalBadComm},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_COMM":"smtp"}`, JournalNoUID},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":null}`, JournalAmbiguous},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"4294967398"}`, JournalBadUID}, // 102 + 2^32
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"+102"}`, JournalBadUID},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":""}`, JournalBadUID},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix\/smtp","_UID":"1000"}`, JournalBadUID},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":["postfix/smtp","x"],"_UID":"102","_COMM":"smtp"}`, JournalAmbiguous},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"x","_UID":"102","SYSLOG_IDENTIFIER":"postfix/smtp"}`, JournalAmbiguous},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/qmgr","_UID":"1000","_COMM":"qmgr"}`, JournalBelieved}, // not a client: unchecked
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/sendmail","_UID":"1000"}`, JournalBelieved},
		{trust, `{` + cur + `"MESSAGE":"postfix/smtp[1]: x"}`, JournalBelieved},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"102","_COMM":"smtp","_SYSTEMD_UNIT":"evil.service"}`, JournalBelieved},
		{units, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"102","_COMM":"smtp","_SYSTEMD_UNIT":"evil.service"}`, JournalBadUnit},
		{units, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"102","_COMM":"smtp","_SYSTEMD_UNIT":"postfix@-.service"}`, JournalBelieved},
		{units, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"102","_COMM":"smtp"}`, JournalBelieved},
		{JournalTrust{UIDs: []uint32{102}, Units: []string{"postfix@*.service"}}, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"102","_COMM":"smtp","_SYSTEMD_UNIT":"postfix@postfix-out.service"}`, JournalBelieved},
		{JournalTrust{UIDs: []uint32{102}, Units: []string{"postfix@*.service"}}, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"102","_COMM":"smtp","_SYSTEMD_UNIT":"postfix.service"}`, JournalBadUnit},
		{JournalTrust{UIDs: []uint32{102}, Units: []string{"postfix[.service"}}, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"102","_COMM":"smtp","_SYSTEMD_UNIT":"postfix[.service"}`, JournalBelieved},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"0","_UID":"1000","_COMM":"smtp"}`, JournalAmbiguous},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":["102","1000"],"_COMM":"smtp"}`, JournalAmbiguous},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"102","_COMM":["smtp","logger"]}`, JournalAmbiguous},
		{trust, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"102","_COMM":"smtp","MESSAGE":"\"_UID\":\"0\""}`, JournalBelieved},
		{JournalTrust{}, `{` + cur + `"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"102","_COMM":"smtp"}`, JournalBadUID},
	} {
		if got := tc.trust.Check([]byte(tc.line)); got != tc.want {
			t.Errorf("%+v.Check(%s) = %v, want %v", tc.trust, tc.line, got, tc.want)
		}
	}
}

// FuzzJournalTrust checks that an entry which would make the correlator
// see an smtp/lmtp client is believed only with a trusted _UID, as
// encoding/json reads it.
func FuzzJournalTrust(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "journal", "forged.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f.Add([]byte(l))
	}
	f.Add([]byte(`{"SYSLOG_IDENTIFIER":"postfix/smtp","_UID":"102","_COMM":"smtp"}`))
	f.Add([]byte(`{"SYSLOG_IDENTIFIER" : "postfix\/smtp", "_UID":"1000"}`))
	f.Add([]byte(`{"_UID":"0","SYSLOG_IDENTIFIER":["postfix/smtp"]}`))
	trust := JournalTrust{UIDs: []uint32{102}}
	f.Fuzz(func(t *testing.T, line []byte) {
		v := trust.Check(line)
		var h header
		var scratch []byte
		if v != JournalBelieved || !parseHeader(line, &h, &scratch) || !isClientTag(h.tag) {
			return
		}
		var m map[string]any
		if json.Unmarshal(line, &m) != nil {
			return // the header parser is laxer than JSON (raw control bytes); journalctl writes valid JSON
		}
		if uid, _ := m["_UID"].(string); uid != "0" && uid != "102" {
			t.Fatalf("believed %q with _UID %v", line, m["_UID"])
		}
	})
}
