package servetest

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// PostmapQ asks the real Postfix client, postmap -q KEY MAP, and returns
// its answer and exit code (1: not found). A missing postmap, or an exit
// above 1, fails t.
func PostmapQ(t *testing.T, key, mapSpec string) (string, int) {
	t.Helper()
	if _, err := exec.LookPath("postmap"); err != nil {
		t.Fatal("postmap not installed: run `bash .ci/deps` (installs the Debian postfix package)")
	}
	cmd := exec.Command("postmap", "-q", key, mapSpec)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("postmap: %v", err)
	}
	if code > 1 {
		t.Fatalf("postmap -q %s %s: exit %d: %s", key, mapSpec, code, errb.String())
	}
	return strings.TrimSpace(out.String()), code
}
