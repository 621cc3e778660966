package logparse

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseHeader(t *testing.T) {
	utc := time.UTC
	tests := []struct {
		name, line string
		ok         bool
		time       string // RFC 3339 in UTC; traditional stamps get year 2026
		host, tag  string
		pid        int
		msg        string
	}{
		{"syslog space padded", "Nov  8 08:08:59 host postfix/smtp[123]: hello", true, "2026-11-08T08:08:59Z", "host", "postfix/smtp", 123, "hello"},
		{"postlogd zero padded", "Nov 08 08:08:59 myhostname postfix/smtp[7979]: hello", true, "2026-11-08T08:08:59Z", "myhostname", "postfix/smtp", 7979, "hello"},
		{"unpadded day", "Nov 8 08:08:59 host postfix/smtp[1]: x", true, "2026-11-08T08:08:59Z", "host", "postfix/smtp", 1, "x"},
		{"two digit day", "Dec 31 23:59:60 h postfix/qmgr[9]: x", true, "2027-01-01T00:00:00Z", "h", "postfix/qmgr", 9, "x"},
		{"pri prefix", "<22>Nov 10 12:34:56 h postfix/smtp[4]: x", true, "2026-11-10T12:34:56Z", "h", "postfix/smtp", 4, "x"},
		{"no host", "Nov 11 23:59:59 postfix/smtp[105]: x", true, "2026-11-11T23:59:59Z", "", "postfix/smtp", 105, "x"},
		{"no pid", "Nov 11 23:59:59 h kernel: [1.2] up", true, "2026-11-11T23:59:59Z", "h", "kernel", 0, "[1.2] up"},
		{"empty message", "Nov 11 23:59:59 h postfix/smtp[5]:", true, "2026-11-11T23:59:59Z", "h", "postfix/smtp", 5, ""},
		{"rfc3339 micro", "2026-11-28T18:17:00.475607+00:00 host postfix/smtp[1]: m", true, "2026-11-28T18:17:00.475607Z", "host", "postfix/smtp", 1, "m"},
		{"rfc3339 no fraction", "2026-11-28T18:17:00+00:00 host postfix/smtp[1]: m", true, "2026-11-28T18:17:00Z", "host", "postfix/smtp", 1, "m"},
		{"rfc3339 +0200", "2026-11-28T20:17:00+0200 host postfix/smtp[1]: m", true, "2026-11-28T18:17:00Z", "host", "postfix/smtp", 1, "m"},
		{"rfc3339 Z", "2026-11-28T18:17:00Z host postfix/smtp[1]: m", true, "2026-11-28T18:17:00Z", "host", "postfix/smtp", 1, "m"},
		{"rfc3339 negative", "2026-11-28T13:17:00.5-05:00 host postfix/smtp[1]: m", true, "2026-11-28T18:17:00.5Z", "host", "postfix/smtp", 1, "m"},
		{"iso space no zone", "2026-11-28 18:17:00 host postfix/smtp[1]: m", true, "2026-11-28T18:17:00Z", "host", "postfix/smtp", 1, "m"},
		{"nested tag", "2026-11-28T18:17:00Z h postfix-mx/content-filter/smtp[77]: m", true, "2026-11-28T18:17:00Z", "h", "postfix-mx/content-filter/smtp", 77, "m"},

		{"empty", "", false, "", "", "", 0, ""},
		{"mark", "Nov 13 01:02:03 host1 -- MARK --", false, "", "", "", 0, ""},
		{"bad month", "Foo  8 08:08:59 host postfix/smtp[1]: x", false, "", "", "", 0, ""},
		{"bad clock", "Nov 31 25:61:61 host postfix/smtp[1]: x", false, "", "", "", 0, ""},
		{"truncated stamp", "Nov 28 16:00:0", false, "", "", "", 0, ""},
		{"truncated tag", "Nov 28 16:00:01 host postfix/smtp[7", false, "", "", "", 0, ""},
		{"pid not digits", "Nov 28 16:00:01 host postfix/smtp[x]: m", false, "", "", "", 0, ""},
		{"no space after colon", "Nov 28 16:00:01 host postfix/smtp[1]:m", false, "", "", "", 0, ""},
		{"rfc3339 bad offset", "2026-11-28T18:17:00+2 host p[1]: m", false, "", "", "", 0, ""},
		{"rfc3339 empty fraction", "2026-11-28T18:17:00.+00:00 host p[1]: m", false, "", "", "", 0, ""},
		{"rfc3339 bad month", "2026-13-28T18:17:00Z host p[1]: m", false, "", "", "", 0, ""},
		{"nul bytes", "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", false, "", "", "", 0, ""},
		{"bad pri", "<2x>Nov 10 12:34:56 h postfix/smtp[4]: x", false, "", "", "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h header
			var scratch []byte
			ok := parseHeader([]byte(tt.line), &h, &scratch)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if h.kind == stampTraditional {
				h.year = 2026
			}
			if got := h.time(utc).Format(time.RFC3339Nano); got != tt.time {
				t.Errorf("time = %s, want %s", got, tt.time)
			}
			if string(h.host) != tt.host || string(h.tag) != tt.tag || h.pid != tt.pid || string(h.msg) != tt.msg {
				t.Errorf("host %q tag %q pid %d msg %q; want %q %q %d %q", h.host, h.tag, h.pid, h.msg, tt.host, tt.tag, tt.pid, tt.msg)
			}
		})
	}
}

func TestParseJournal(t *testing.T) {
	tests := []struct {
		name, line string
		ok         bool
		tag, host  string
		pid        int
		msg        string
		usec       int64
	}{
		{"plain", `{"__REALTIME_TIMESTAMP":"1795889831475607","SYSLOG_IDENTIFIER":"postfix/smtp","SYSLOG_PID":"7979","_PID":"1","_HOSTNAME":"mail","MESSAGE":"hi"}`, true, "postfix/smtp", "mail", 1, "hi", 1795889831475607},
		{"pid only", `{"__REALTIME_TIMESTAMP":"1","SYSLOG_IDENTIFIER":"postfix/smtp","_PID":"42","MESSAGE":"x"}`, true, "postfix/smtp", "", 42, "x", 1},
		{"syslog pid fallback", `{"__REALTIME_TIMESTAMP":"1","SYSLOG_IDENTIFIER":"postfix/smtp","SYSLOG_PID":"43","MESSAGE":"x"}`, true, "postfix/smtp", "", 43, "x", 1},
		{"escapes", `{"__REALTIME_TIMESTAMP":"1","MESSAGE":"a\"b\\c\/d\u00e9\ud83d\ude00\n"}`, true, "", "", 0, "a\"b\\c/dé😀\n", 1},
		{"byte array", `{"__REALTIME_TIMESTAMP":"1","MESSAGE":[104,105,255]}`, true, "", "", 0, "hi\xff", 1},
		{"string array", `{"__REALTIME_TIMESTAMP":"1","MESSAGE":["first","second"]}`, true, "", "", 0, "first", 1},
		{"null message", `{"__REALTIME_TIMESTAMP":"1","MESSAGE":null}`, true, "", "", 0, "", 1},
		{"nested and spaces", `{ "X" : {"a":[1,{"b":"}"}]} , "__REALTIME_TIMESTAMP" : "7" , "MESSAGE" : "m" } `, true, "", "", 0, "m", 7},
		{"numeric timestamp", `{"__REALTIME_TIMESTAMP":123,"MESSAGE":"m"}`, true, "", "", 0, "m", 123},

		{"no timestamp", `{"MESSAGE":"m"}`, false, "", "", 0, "", 0},
		{"bad timestamp", `{"__REALTIME_TIMESTAMP":"12a","MESSAGE":"m"}`, false, "", "", 0, "", 0},
		{"truncated", `{"__REALTIME_TIMESTAMP":"1","MESSAGE":"m`, false, "", "", 0, "", 0},
		{"trailing garbage", `{"__REALTIME_TIMESTAMP":"1"} x`, false, "", "", 0, "", 0},
		{"bad escape", `{"__REALTIME_TIMESTAMP":"1","MESSAGE":"\q"}`, false, "", "", 0, "", 0},
		{"byte out of range", `{"__REALTIME_TIMESTAMP":"1","MESSAGE":[256]}`, false, "", "", 0, "", 0},
		{"not an object", `{]`, false, "", "", 0, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h header
			var scratch []byte
			ok := parseHeader([]byte(tt.line), &h, &scratch)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if h.kind != stampUnixMicro || h.usec != tt.usec {
				t.Errorf("kind %d usec %d, want %d", h.kind, h.usec, tt.usec)
			}
			if string(h.tag) != tt.tag || string(h.host) != tt.host || h.pid != tt.pid || string(h.msg) != tt.msg {
				t.Errorf("tag %q host %q pid %d msg %q; want %q %q %d %q", h.tag, h.host, h.pid, h.msg, tt.tag, tt.host, tt.pid, tt.msg)
			}
		})
	}
}

// TestInferYear feeds traditional stamps (which have no year) and checks
// the year each one is given.
func TestInferYear(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	tests := []struct {
		name   string
		ref    time.Time
		loc    *time.Location
		stamps []string
		want   []string // RFC 3339, UTC
	}{
		{
			name:   "same year",
			ref:    time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC),
			stamps: []string{"Nov 28 10:00:00", "Nov 29 10:00:00"},
			want:   []string{"2026-11-28T10:00:00Z", "2026-11-29T10:00:00Z"},
		},
		{
			name:   "december read in january",
			ref:    time.Date(2027, 1, 2, 12, 0, 0, 0, time.UTC),
			loc:    berlin,
			stamps: []string{"Dec 31 23:59:58", "Jan  1 00:00:01", "Dec 31 23:59:59", "Jan  2 10:00:00"},
			want:   []string{"2026-12-31T22:59:58Z", "2026-12-31T23:00:01Z", "2026-12-31T22:59:59Z", "2027-01-02T09:00:00Z"},
		},
		{
			name:   "a day ahead of the clock is still this year",
			ref:    time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC),
			stamps: []string{"Nov 29 11:00:00"},
			want:   []string{"2026-11-29T11:00:00Z"},
		},
		{
			name:   "follower running across new year",
			ref:    time.Date(2026, 12, 30, 12, 0, 0, 0, time.UTC),
			stamps: []string{"Dec 30 12:00:00", "Dec 31 23:00:00", "Jan  3 08:00:00", "Mar 15 08:00:00"},
			want:   []string{"2026-12-30T12:00:00Z", "2026-12-31T23:00:00Z", "2027-01-03T08:00:00Z", "2027-03-15T08:00:00Z"},
		},
		{
			name:   "long gap without mail stays in the year",
			ref:    time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
			stamps: []string{"Feb 20 00:00:00", "Jun 30 00:00:00", "Nov 30 00:00:00"},
			want:   []string{"2026-02-20T00:00:00Z", "2026-06-30T00:00:00Z", "2026-11-30T00:00:00Z"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc := tt.loc
			if loc == nil {
				loc = time.UTC
			}
			c := NewCorrelator(Options{RefTime: tt.ref, Location: loc})
			for i, s := range tt.stamps {
				line := s + " mx postfix/smtp[1]: ABCDEF1234: to=<a@b.example>, relay=none, delay=1, delays=1/0/0/0, dsn=4.4.1, status=deferred (x)"
				ds := c.Feed([]byte(line))
				if len(ds) != 1 {
					t.Fatalf("%q: no delivery", line)
				}
				if got := ds[0].Time.Format(time.RFC3339); got != tt.want[i] {
					t.Errorf("%s: got %s, want %s", s, got, tt.want[i])
				}
				if ds[0].Time.Location() != time.UTC {
					t.Errorf("%s: time not in UTC", s)
				}
			}
		})
	}
}

// FuzzHeader checks that header parsing never panics and that what it
// returns lies within the line.
func FuzzHeader(f *testing.F) {
	for _, s := range []string{
		"Nov  8 08:08:59 host postfix/smtp[123]: hello",
		"Nov 08 08:08:59 host postfix/smtp[123]: hello",
		"2026-11-28T18:17:00.475607+00:00 host postfix/smtp[1]: m",
		"2026-11-28T20:17:00+0200 host postfix/smtp[1]: m",
		"<22>Nov 10 12:34:56 h postfix/smtp[4]: x",
		`{"__REALTIME_TIMESTAMP":"1","MESSAGE":[104,105,255],"SYSLOG_IDENTIFIER":"postfix/smtp"}`,
		`{"__REALTIME_TIMESTAMP":"1","MESSAGE":"\ud83d\ude00\u00"}`,
		"\x00\x01\xff", "Nov 28 16:00:01 host postfix/smtp[7", "{", "{\"a\":[[[[", "<999",
	} {
		f.Add([]byte(s))
	}
	addTestdataSeeds(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		var h header
		var scratch []byte
		if !parseHeader(line, &h, &scratch) {
			return
		}
		if h.kind == stampNone {
			t.Fatal("ok without a stamp")
		}
		if h.kind == stampTraditional {
			if h.mon < 1 || h.mon > 12 || h.day < 1 || h.day > 31 {
				t.Fatalf("bad date %d-%d", h.mon, h.day)
			}
			h.year = 2026
		}
		if h.pid < 0 || len(h.msg) > len(line) || len(h.tag) > len(line) {
			t.Fatalf("fields out of range: %+v", h)
		}
		if tm := h.time(time.UTC); tm.Location() != time.UTC {
			t.Fatal("time not UTC")
		}
	})
}

// addTestdataSeeds adds every line of testdata/*.log to a fuzz corpus.
func addTestdataSeeds(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.log"))
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			f.Add([]byte(l))
		}
	}
}

// TestContainerPrefixes: what docker logs, docker compose logs and kubectl
// logs put before the syslog line is read (issue #14 item 3); a container
// runtime's RFC 3339 stamp, which has a year and a zone, wins over the
// program's own.
func TestContainerPrefixes(t *testing.T) {
	c := NewCorrelator(goldenOptions("containers.log"))
	ds := feedAll(c, readLogLines(t, filepath.Join("testdata", "containers.log")))
	want := []struct{ time, host, rcpt string }{
		{"2026-05-06T20:28:37Z", "mail", "ann@a.example"},
		{"2024-05-06T20:28:38.223456789Z", "mail", "bob@b.example"},
		{"2024-05-06T20:28:39.000001Z", "mail", "cat@c.example"},
		{"2021-01-24T14:43:33.271226Z", "", "dan@d.example"},
		{"2021-01-24T14:43:34Z", "", "eve@e.example"},
		{"2024-05-06T20:28:40.5Z", "mail", "fay@f.example"},
		{"2024-05-06T20:28:41.000000001Z", "mail", "gus@g.example"},
		{"2026-05-06T20:28:42Z", "mail", "hal@h.example"},
	}
	if len(ds) != len(want) {
		t.Fatalf("%d deliveries, want %d: %+v", len(ds), len(want), ds)
	}
	for i, w := range want {
		d := ds[i]
		if d.Time.Format(time.RFC3339Nano) != w.time || d.LogHost != w.host || d.Recipient != w.rcpt || d.Process != "postfix/smtp" {
			t.Errorf("delivery %d: %s %q %q %q, want %s %q %q", i, d.Time.Format(time.RFC3339Nano), d.LogHost, d.Recipient, d.Process, w.time, w.host, w.rcpt)
		}
	}
	for i, tls := range []bool{true, true, false, true} {
		if ds[i].TLS == nil || *ds[i].TLS != tls {
			t.Errorf("delivery %d: TLS %v, want %v", i, ds[i].TLS, tls)
		}
	}
	if s := c.Stats(); s.Skipped != 1 || s.TLSLines != 3 {
		t.Errorf("stats %+v", s)
	}
}

// FuzzContainerHeader wraps a line in the prefixes container tools add and
// checks that the wrapped line parses to the same host, tag, pid and
// message as the line itself, with the runtime's stamp when one is added;
// and that no input panics.
func FuzzContainerHeader(f *testing.F) {
	f.Add("postfix-mailcow_1", uint8(1), "May  6 20:28:37 mail postfix/smtp[859]: 4F1A2B3C4D: to=<a@b>, relay=none, status=sent")
	f.Add("postfix-1", uint8(7), "2021-01-24T14:43:33.171226+00:00 INFO    postfix/smtp[138]: hello")
	f.Add("x", uint8(12), "Nov 08 08:08:59 host postfix/smtp[123]: hello")
	f.Add("", uint8(0), "2026-11-28T18:17:00.475607+00:00 host postfix/smtp[1]: m")
	addTestdataSeedsPrefixed(f)
	f.Fuzz(func(t *testing.T, name string, mode uint8, line string) {
		var scratch []byte
		var bare header
		okBare := len(line) > 0 && line[0] != '{' && !hasContainerParts(line) && parseHeader([]byte(line), &bare, &scratch)
		wrapped := line
		stamped := mode&2 != 0
		if stamped {
			switch {
			case mode&8 != 0:
				wrapped = "2024-05-06T20:28:37.123456789Z stdout F " + wrapped
			default:
				wrapped = "2024-05-06T20:28:37.123456789Z " + wrapped
			}
		}
		named := mode&1 != 0 && validServiceName(name)
		if named {
			wrapped = name + strings.Repeat(" ", int(mode>>4)+1) + "| " + wrapped
			if mode&4 != 0 {
				wrapped = "\x1b[36m" + strings.Replace(wrapped, "| ", "|\x1b[0m ", 1)
			}
		} else if mode&4 != 0 {
			wrapped = "[pod/p-1/c] " + wrapped
		}
		var h header
		ok := parseHeader([]byte(wrapped), &h, &scratch)
		if !okBare {
			return
		}
		if !ok {
			t.Fatalf("%q parses, %q does not", line, wrapped)
		}
		if string(h.host) != string(bare.host) || string(h.tag) != string(bare.tag) || h.pid != bare.pid || string(h.msg) != string(bare.msg) {
			t.Fatalf("%q: host %q tag %q pid %d msg %q; bare %q: %q %q %d %q", wrapped, h.host, h.tag, h.pid, h.msg, line, bare.host, bare.tag, bare.pid, bare.msg)
		}
		if stamped {
			if got := h.time(time.UTC).Format(time.RFC3339Nano); got != "2024-05-06T20:28:37.123456789Z" {
				t.Fatalf("%q: time %s, want the runtime's", wrapped, got)
			}
		}
	})
}

// hasContainerParts reports whether line has a prefix of its own, or a
// runtime stamp before its stamp: wrapping it once more is not a format.
func hasContainerParts(line string) bool {
	b := []byte(line)
	if len(cutServicePrefix(b)) != len(b) {
		return true
	}
	var h, inner header
	rest, ok := parseStamp(b, &h)
	if !ok {
		return false
	}
	if len(cutCRIStream(rest)) != len(rest) {
		return true
	}
	_, ok = parseStamp(rest, &inner)
	return ok
}

func validServiceName(s string) bool {
	if s == "" || len(s) > maxServiceName {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isServiceChar(s[i], i) {
			return false
		}
	}
	return true
}

func addTestdataSeedsPrefixed(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.log"))
	for i, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		for j, l := range strings.Split(string(b), "\n") {
			f.Add("svc_1", uint8(i+j), l)
		}
	}
}
