package pgtest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestStartClusterAt makes a kept cluster, writes to it, stops it and
// starts it again from its files: the row is still there.
func TestStartClusterAt(t *testing.T) {
	if Off() {
		t.Skipf("%s=off: skipping a test against PostgreSQL", Env)
	}
	// Not t.TempDir: the server runs as an unprivileged user, who must
	// reach the directory.
	parent, err := os.MkdirTemp("", "mailtls-pgtest-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(parent)
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "kept")
	c, err := StartClusterAt(dir, "shared_buffers=32MB")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for _, q := range []string{"CREATE TABLE kept (n int)", "INSERT INTO kept VALUES (7)"} {
		if _, err := c.Query(ctx, "postgres", q); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if c, err = StartClusterAt(dir); err != nil {
		t.Fatal(err)
	}
	rows, err := c.Query(ctx, "postgres", "SELECT n FROM kept")
	if err != nil || len(rows) != 1 || rows[0][0] != "7" {
		t.Fatalf("after a restart from the kept files: %v, %v; want the row 7", rows, err)
	}
	got, err := c.Query(ctx, "postgres", "SHOW shared_buffers")
	if err != nil || len(got) != 1 || got[0][0] != "16MB" {
		t.Errorf("shared_buffers after a restart without settings = %v, %v; want the tests' 16MB", got, err)
	}
}
