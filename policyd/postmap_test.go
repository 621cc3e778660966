package policyd

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestPostmapInterop queries the servers with Postfix's own clients
// (postmap -q with socketmap: and tcp: tables). It is skipped where Postfix
// is not installed.
func TestPostmapInterop(t *testing.T) {
	postmap, err := exec.LookPath("postmap")
	if err != nil {
		t.Skip("postmap not installed")
	}
	srv := newTestServer(t, "")
	_, smAddr := listen(t, srv, "tcp", protoSocketmap)
	_, smPath := listen(t, srv, "unix", protoSocketmap)
	_, tcpAddr := listen(t, srv, "tcp", protoTCPTable)
	tables := []string{
		"socketmap:inet:" + smAddr + ":tlspolicy",
		"socketmap:unix:" + smPath + ":tlspolicy",
		"tcp:" + tcpAddr,
	}
	query := func(key, table string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, postmap, "-q", key, table)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return strings.TrimSuffix(stdout.String(), "\n"), 0
		case errors.As(err, &ee) && ee.ExitCode() == 1 && stderr.Len() == 0:
			return "", 1 // not found
		case strings.Contains(stderr.String(), "main.cf"):
			t.Skipf("postmap is not configured here: %s", stderr.String())
		}
		t.Fatalf("postmap -q %q %s: %v: %s", key, table, err, stderr.String())
		return "", -1
	}
	tests := []struct{ key, want string }{
		{"example.com", "encrypt protocols=>=TLSv1.2"},
		{"EXAMPLE.com", "encrypt protocols=>=TLSv1.2"},
		{"a.b.corp.example", "verify match=hostname"},
		{"bücher.example", "dane"},
		{"[mx.example.net]:587", "secure"},
		{"corp.example", ""}, // not found
		{"nowhere.example", ""},
	}
	for _, table := range tables {
		for _, tt := range tests {
			got, rc := query(tt.key, table)
			if got != tt.want || (rc == 1) != (tt.want == "") {
				t.Errorf("postmap -q %q %s = %q (exit %d), want %q", tt.key, table, got, rc, tt.want)
			}
		}
	}
}
