package ingest

import (
	"errors"
	"os"
	"path/filepath"
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
