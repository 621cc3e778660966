package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestMigrateRequest: every flag error is ErrBadInput with the flag's
// name and no package prefix, before any database is opened or created.
func TestMigrateRequest(t *testing.T) {
	ctx, dir := context.Background(), t.TempDir()
	from, to := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	src, err := Open(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.SetOverride(ctx, Override{Key: "example.com", Policy: "encrypt"}, "alice"); err != nil {
		t.Fatal(err)
	}
	src.Close()
	for _, c := range []struct {
		q    MigrateRequest
		want string
	}{
		{MigrateRequest{To: to}, "migrate needs --from PATH.db and --to postgres://... (both)"},
		{MigrateRequest{From: filepath.Join(dir, "none.db"), To: to}, `--from "` + filepath.Join(dir, "none.db") + `": not an existing SQLite database file`},
		{MigrateRequest{From: from, To: from}, "--from and --to are the same database"},
		{MigrateRequest{From: from, To: to, Prefer: "both"}, `--prefer "both"; accepted: source, target`},
		{MigrateRequest{From: from, To: to, Host: "bad host!"}, "--host: "},
	} {
		_, _, err := Migrate(ctx, c.q)
		if !errors.Is(err, ErrBadInput) || len(err.Error()) < len(c.want) || err.Error()[:len(c.want)] != c.want {
			t.Errorf("%+v: %v, want %q", c.q, err, c.want)
		}
	}
	if _, err := os.Stat(to); err == nil {
		t.Fatal("a refused request created --to")
	}
	res, target, err := Migrate(ctx, MigrateRequest{From: from, To: to, Host: "Old"})
	if err != nil || res.Overrides != 1 || target != to {
		t.Fatalf("migrate: %+v into %q, %v", res, target, err)
	}
}
