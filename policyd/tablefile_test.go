package policyd

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestReadTable(t *testing.T) {
	in := "# comment\n\nExample.COM\tencrypt\n.corp.example verify\n  match=hostname:nexthop\n   # indented comment\n[mx.example.net]:587 encrypt protocols=>=TLSv1.2\n"
	got, err := ReadTable(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []TableEntry{
		{Line: 3, Key: "example.com", Value: "encrypt"},
		{Line: 4, Key: ".corp.example", Value: "verify match=hostname:nexthop"},
		{Line: 7, Key: "[mx.example.net]:587", Value: "encrypt protocols=>=TLSv1.2"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, got, "header"); err != nil {
		t.Fatal(err)
	}
	again, err := ReadTable(&buf)
	if err != nil {
		t.Fatalf("re-reading written table: %v", err)
	}
	for i := range got {
		if again[i].Key != got[i].Key || again[i].Value != got[i].Value {
			t.Errorf("round trip %d: %+v != %+v", i, again[i], got[i])
		}
	}
}

func TestReadTableErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"  leading continuation\n", "line 1"},
		{"example.com\n", "line 1"},
		{"ok.example encrypt\nbad.example encrpyt\n", "line 2"},
		{"a.example encrypt\nA.example may\n", "duplicate key"},
		{"a b.example encrypt\n", "line 1"},
		{"x.example encrypt protocols=TLSv1.2,ciphers=high\n", "line 1"},
		{strings.Repeat("x", maxTableLine+10) + " may\n", "longer than"},
		// Continuation lines, each under the bound, make an entry over it.
		{"a.example encrypt\n" + strings.Repeat(" "+strings.Repeat("x", 1000)+"\n", maxTableLine/1000+1), "entry on line 1 and its continuation lines"},
	} {
		_, err := ReadTable(strings.NewReader(tc.in))
		if err == nil || !errors.Is(err, ErrBadTable) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadTable(%.40q): err %v, want %q", tc.in, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("multi-line error: %q", err)
		}
	}
}

// TestReadTableErrorCount: a file of many bad lines gets a bounded error
// that names the first ones and counts the rest.
func TestReadTableErrorCount(t *testing.T) {
	var in strings.Builder
	for i := range 500 {
		fmt.Fprintf(&in, "bad%d.example encrpyt\n", i)
	}
	_, err := ReadTable(strings.NewReader(in.String()))
	if err == nil || !errors.Is(err, ErrBadTable) {
		t.Fatalf("err %v, want ErrBadTable", err)
	}
	msg := err.Error()
	if n := strings.Count(msg, "line "); n != maxTableErrors {
		t.Errorf("%d lines named, want %d: %.300s", n, maxTableErrors, msg)
	}
	if !strings.Contains(msg, "line 1:") || !strings.Contains(msg, fmt.Sprintf("and %d more bad lines", 500-maxTableErrors)) {
		t.Errorf("error %.300s... does not name line 1 and count the rest", msg)
	}
	// An entry too long with its continuation lines is one bad line among
	// the others, and the lines after it are still read.
	long := "bad.example encrpyt\nlong.example encrypt\n" + strings.Repeat(" "+strings.Repeat("x", 1000)+"\n", maxTableLine/1000+5) + "after.example encrpyt\n"
	_, err = ReadTable(strings.NewReader(long))
	if err == nil || strings.Count(err.Error(), "; ") != 2 || !strings.Contains(err.Error(), "line 1:") || !strings.Contains(err.Error(), "entry on line 2 and its continuation lines") || !strings.Contains(err.Error(), "encrpyt") {
		t.Errorf("a long entry among bad lines: %v", err)
	}
}

func FuzzReadTable(f *testing.F) {
	for _, s := range []string{"example.com encrypt\n", ".a.b verify\n match=hostname\n", "#c\n\n[x]:25 may\n", " x\n", "a\tb\tc\n", "\x00\xff encrypt\n", "a.example encrypt,may\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		entries, err := ReadTable(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, e := range entries {
			if _, err := NormalizeKey(e.Key); err != nil {
				t.Fatalf("accepted bad key %q: %v", e.Key, err)
			}
			p, err := ParsePolicy(e.Value)
			if err != nil || p.String() != e.Value {
				t.Fatalf("accepted value %q does not re-parse to itself: %v", e.Value, err)
			}
			if strings.ContainsAny(e.Value, ",\n\t") {
				t.Fatalf("value %q can smuggle attributes", e.Value)
			}
		}
	})
}
