package store_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// backends are the directories of the store implementations, the only
// packages that may import database/sql or a database driver. A new
// backend adds its own (ARCHITECTURE.md, "Add a store engine").
// internal/pgtest, the tests' throwaway PostgreSQL, creates databases
// through pgx.
var backends = []string{"store", "internal/pgtest"}

// TestSQLStaysInStore: nothing but a store implementation (not even
// store/storetest) imports database/sql or a driver (SQLite's, pgx), so that
// every dialect-specific piece stays behind the seam.
func TestSQLStaysInStore(t *testing.T) {
	walkImports(t, func(rel string, _ bool, p string) {
		if slices.Contains(backends, filepath.ToSlash(filepath.Dir(rel))) {
			return
		}
		if p == "database/sql" || strings.HasPrefix(p, "database/sql/") || strings.HasPrefix(p, "modernc.org/sqlite") ||
			strings.HasPrefix(p, "github.com/jackc/pgx") {
			t.Errorf("%s imports %s: only package store may (use or add a store method)", rel, p)
		}
	})
}

// TestBenchNotInProduction: the benchmark code and its generators
// (bench/gen) are for benchmarks and tests. Tests anywhere may import
// bench/ packages; production code outside bench/ may not, so that none of
// it ships in the mailtls binary.
func TestBenchNotInProduction(t *testing.T) {
	walkImports(t, func(rel string, test bool, p string) {
		if !test && !strings.HasPrefix(rel, "bench/") && strings.HasPrefix(p, "github.com/mailtls/mailtls/bench/") {
			t.Errorf("%s imports %s: only tests and bench/ may", rel, p)
		}
	})
}

// walkImports calls fn with each import of each Go file of the
// repository: its path relative to the root (with slashes), whether it is
// a test file, and the imported path.
func walkImports(t *testing.T, fn func(rel string, test bool, path string)) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		files++
		rel, _ := filepath.Rel(root, path)
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			fn(filepath.ToSlash(rel), strings.HasSuffix(path, "_test.go"), p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("walked %d Go files under %s; is this the repository?", files, root)
	}
}
