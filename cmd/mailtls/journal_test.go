package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportJournalTrust: import applies the journal trust rule of
// follow --journal to journalctl -o json input: forged smtp entries are not
// stored, and the summary counts them by reason.
func TestImportJournalTrust(t *testing.T) {
	fixture := filepath.Join("..", "..", "logparse", "testdata", "journal", "forged.json")
	c := newCLI(t)
	out := c.ok("import", "--postfix-user", "100", fixture)
	if !strings.Contains(out, "14 lines read, 5 deliveries stored") ||
		!strings.Contains(out, "5 journal entries skipped as not from Postfix (no_uid=1 uid=2 comm=1 ambiguous=1)") {
		t.Errorf("summary: %q", out)
	}
	rows := strings.Split(strings.TrimSpace(c.ok("deliveries", "--format", "jsonl")), "\n")
	for _, l := range rows {
		var d deliveryJSON
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatal(err)
		}
		if d.Domain == "victim.example" {
			t.Errorf("forged delivery stored: %s", l)
		}
	}
	if len(rows) != 5 {
		t.Errorf("%d deliveries stored, want 5:\n%s", len(rows), strings.Join(rows, "\n"))
	}

	// Another uid: Postfix's entries with _UID 100 are not believed
	// either; the root ones are.
	c2 := newCLI(t)
	out, errs, code := c2.run("", "import", "--postfix-user", "4242", fixture)
	if code != 0 || !strings.Contains(out, "1 deliveries stored") || !strings.Contains(out, "(no_uid=1 uid=8 ambiguous=1)") {
		t.Errorf("summary with --postfix-user 4242: %d %q", code, out)
	}
	if !strings.Contains(errs, "8 smtp/lmtp journal entries came from a _UID other than root's and --postfix-user's (uid 4242)") {
		t.Errorf("no --postfix-user hint: %q", errs)
	}
}

func TestJournalFlagErrors(t *testing.T) {
	c := newCLI(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"follow", "--journal-dir", "/nonexistent/journal"}, `--journal-dir "/nonexistent/journal": no such file or directory`},
		{[]string{"follow", "--journal-dir", file}, "is not a directory"},
		{[]string{"follow", "--journal-dir", ""}, "--journal-dir is empty"},
		{[]string{"run", "--journal-dir", "/nonexistent/journal"}, "--journal-dir"},
		{[]string{"follow", "--journal", "--journal-unit", "postfix"}, `--journal-unit "postfix": want a full unit name`},
		{[]string{"follow", "--journal", "--postfix-user", "no-such-user-here"}, `--postfix-user "no-such-user-here": no such user`},
		// the flags' own errors before the user's (a lookup through NSS)
		{[]string{"follow", "--journal-dir", "/nonexistent/journal", "--postfix-user", "no-such-user-here"}, `--journal-dir "/nonexistent/journal"`},
		{[]string{"follow", "--journal", "--journal-unit", "postfix", "--postfix-user", "no-such-user-here"}, `--journal-unit "postfix"`},
		{[]string{"import", "--postfix-user", "no-such-user-here", file}, `--postfix-user "no-such-user-here": no such user`},
	} {
		args := tc.args
		if args[0] != "import" {
			args = append(args, "--config", "/dev/null")
		}
		_, errs, code := c.run("", args...)
		if code != exitUsage || !strings.Contains(errs, tc.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and one line with %q", tc.args, code, errs, exitUsage, tc.want)
		}
	}
}
