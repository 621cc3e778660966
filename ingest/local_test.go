package ingest

import (
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/logparse"
)

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "mail.log")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckFiles([]string{"-", f}); err != nil {
		t.Fatalf("stdin and a file: %v", err)
	}
	if err := CheckFiles([]string{f, dir}); err == nil || err.Error() != dir+" is a directory (want a log file)" {
		t.Fatalf("directory: %v", err)
	}
	if err := CheckFiles([]string{filepath.Join(dir, "none")}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestPostfixUID(t *testing.T) {
	if uid, err := PostfixUID("107"); err != nil || uid != 107 {
		t.Fatalf("numeric: %d, %v", uid, err)
	}
	if uid, err := PostfixUID("root"); err != nil || uid != 0 {
		t.Fatalf("root: %d, %v", uid, err)
	}
	if _, err := PostfixUID("no-such-user-mailtls"); !errors.Is(err, ErrNoUser) {
		t.Fatalf("unknown user: %v", err)
	}
}

func TestResultSummary(t *testing.T) {
	r := Result{Stats: logparse.Stats{Lines: 10, Deliveries: 6, Skipped: 1}, Added: 3, Old: 2, FirstSkipped: "x"}
	h := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	want := "10 lines read, 3 deliveries stored (1 already present, 2 older than 2026-01-02, when deliveries were pruned), 1 lines skipped as malformed, the first: x"
	if got := r.Summary(h); got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	r.Old = 0
	if got := r.Summary(h); !strings.Contains(got, "(3 already present)") || strings.Contains(got, "older") {
		t.Fatalf("no old: %q", got)
	}
}

func TestJournalOptions(t *testing.T) {
	for u, ok := range map[string]bool{"postfix.service": true, "postfix@-.service": true, "postfix": false, "a b.service": false, "x/y.service": false} {
		if err := CheckJournalUnit(u); (err == nil) != ok {
			t.Errorf("CheckJournalUnit(%q) = %v, want ok %v", u, err, ok)
		}
	}
	dir := t.TempDir()
	if abs, err := JournalDir(dir); err != nil || abs != dir {
		t.Errorf("JournalDir(%q) = %q, %v", dir, abs, err)
	}
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]string{"": "is empty", file: "is not a directory", filepath.Join(dir, "none"): "no such file"} {
		if _, err := JournalDir(d); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("JournalDir(%q) = %v, want an error with %q", d, err, want)
		}
	}
	if tr, err := PostfixTrust("0", true, true); err != nil || len(tr.UIDs) != 1 || tr.UIDs[0] != 0 {
		t.Errorf("PostfixTrust(0) = %+v, %v", tr, err)
	}
	if tr, err := PostfixTrust("no-such-user-mailtls", false, false); err != nil || len(tr.UIDs) != 0 {
		t.Errorf("lenient PostfixTrust of a missing default user = %+v, %v; want only root trusted", tr, err)
	}
	if _, err := PostfixTrust("no-such-user-mailtls", true, false); err == nil || !strings.Contains(err.Error(), "no such user") {
		t.Errorf("PostfixTrust of a missing given user: %v", err)
	}
	if got := DescribeTrust("0", logparse.JournalTrust{UIDs: []uint32{0}}); got != "(uid 0)" {
		t.Errorf("DescribeTrust = %q", got)
	}
}

// TestSetImportMemory: the heap gets the import's memory less what the
// store keeps outside it, unless GOMEMLIMIT is set.
func TestSetImportMemory(t *testing.T) {
	limit, gc := debug.SetMemoryLimit(-1), debug.SetGCPercent(-1)
	defer func() { debug.SetMemoryLimit(limit); debug.SetGCPercent(gc) }()
	none := func(string) string { return "" }
	for _, tc := range []struct {
		cache, want int64
	}{{16 << 20, 48 << 20}, {0, 64 << 20}} {
		SetImportMemory(none, tc.cache)
		if got := debug.SetMemoryLimit(-1); got != tc.want {
			t.Errorf("store cache %d: heap limit %d, want %d", tc.cache, got, tc.want)
		}
	}
	debug.SetMemoryLimit(1 << 40)
	SetImportMemory(func(k string) string {
		if k == "GOMEMLIMIT" {
			return "1TiB"
		}
		return ""
	}, 0)
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Errorf("with GOMEMLIMIT set the limit became %d", got)
	}
}
