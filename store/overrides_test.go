package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
)

func TestOverridesCRUD(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	exp := t0.Add(48 * time.Hour)

	if err := s.SetOverride(ctx, Override{Key: "example.com", Policy: "encrypt", Note: "ticket 1"}, "alice"); err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return t0.Add(time.Hour) }
	if err := s.SetOverride(ctx, Override{Key: ".example.com", Policy: "verify match=hostname", Expires: exp}, ""); err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return t0.Add(2 * time.Hour) }
	if err := s.SetOverride(ctx, Override{Key: "example.com", Policy: "secure", Note: "ticket 2"}, "bob"); err != nil {
		t.Fatal(err)
	}
	// Same again: no change, no history.
	if err := s.SetOverride(ctx, Override{Key: "example.com", Policy: "secure", Note: "ticket 2"}, "bob"); err != nil {
		t.Fatal(err)
	}

	got, err := s.Overrides(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []Override{
		{Key: ".example.com", Policy: "verify match=hostname", Created: t0.Add(time.Hour), Updated: t0.Add(time.Hour), Expires: exp},
		{Key: "example.com", Policy: "secure", Note: "ticket 2", Created: t0, Updated: t0.Add(2 * time.Hour)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Overrides:\n got %+v\nwant %+v", got, want)
	}

	if err := s.RemoveOverride(ctx, ".example.com", "carol"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveOverride(ctx, ".example.com", "carol"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second remove: %v, want ErrNotFound", err)
	}
	if ErrNotFound.Error() != "store: override not found" {
		t.Errorf("ErrNotFound text %q", ErrNotFound)
	}

	hist, err := s.History(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	wantHist := []Change{
		{Key: ".example.com", Old: "verify match=hostname", New: "", Actor: "carol", At: t0.Add(2 * time.Hour)},
		{Key: "example.com", Old: "encrypt", New: "secure", Actor: "bob", At: t0.Add(2 * time.Hour), Note: "ticket 2"},
		{Key: ".example.com", Old: "", New: "verify match=hostname", Actor: "unknown", At: t0.Add(time.Hour)},
		{Key: "example.com", Old: "", New: "encrypt", Actor: "alice", At: t0, Note: "ticket 1"},
	}
	if !reflect.DeepEqual(hist, wantHist) {
		t.Errorf("History(all):\n got %+v\nwant %+v", hist, wantHist)
	}
	hist, err = s.History(ctx, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(hist, []Change{wantHist[1], wantHist[3]}) {
		t.Errorf("History(example.com): %+v", hist)
	}
}

func TestOverrideValidation(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	for _, o := range []Override{
		{Key: "", Policy: "encrypt"},
		{Key: "exa mple.com", Policy: "encrypt"},
		{Key: "example.com", Policy: " "},
		{Key: "example.com", Policy: "encrypt\nfoo"},
		{Key: "example.com", Policy: "encrypt", Note: "a\x00b"},
	} {
		if err := s.SetOverride(ctx, o, "x"); !errors.Is(err, ErrBadInput) {
			t.Errorf("SetOverride(%+v) = %v, want ErrBadInput", o, err)
		}
	}
}

func TestImportAllOrNothing(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	if err := s.SetOverride(ctx, Override{Key: "keep.example", Policy: "may"}, "a"); err != nil {
		t.Fatal(err)
	}
	v0, _ := s.OverridesVersion(ctx)
	bad := [][]Override{
		{{Key: "a.example", Policy: "encrypt"}, {Key: "b example", Policy: "encrypt"}},
		{{Key: "a.example", Policy: "encrypt"}, {Key: "a.example", Policy: "verify"}},
	}
	for _, ovs := range bad {
		if n, err := s.ImportOverrides(ctx, ovs, "a"); err == nil || n != 0 {
			t.Errorf("import %v: n=%d err=%v, want error", ovs, n, err)
		}
	}
	// A failure inside the transaction (a trigger on the single writer
	// connection) must roll back the rows already written.
	w, _ := s.writer()
	if _, err := w.Exec(`CREATE TEMP TRIGGER fail_c BEFORE INSERT ON overrides WHEN NEW.key = 'c.example' BEGIN SELECT RAISE(ABORT, 'boom'); END`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ImportOverrides(ctx, []Override{{Key: "a.example", Policy: "encrypt"}, {Key: "c.example", Policy: "encrypt"}}, "a"); err == nil {
		t.Error("import with failing row succeeded")
	}
	if _, err := w.Exec(`DROP TRIGGER temp.fail_c`); err != nil {
		t.Fatal(err)
	}
	ovs, _ := s.Overrides(ctx)
	if len(ovs) != 1 || ovs[0].Key != "keep.example" {
		t.Errorf("after failed imports: %+v", ovs)
	}
	if h, _ := s.History(ctx, ""); len(h) != 1 {
		t.Errorf("history after failed imports: %+v", h)
	}
	if v, _ := s.OverridesVersion(ctx); v != v0 {
		t.Errorf("version changed by failed imports: %d -> %d", v0, v)
	}

	n, err := s.ImportOverrides(ctx, []Override{
		{Key: "a.example", Policy: "encrypt"},
		{Key: "keep.example", Policy: "may"}, // unchanged
		{Key: "[relay.example]:587", Policy: "secure"},
	}, "importer")
	if err != nil || n != 2 {
		t.Fatalf("import: n=%d err=%v, want 2", n, err)
	}
	ovs, _ = s.Overrides(ctx)
	if len(ovs) != 3 {
		t.Errorf("after import: %+v", ovs)
	}
	if h, _ := s.History(ctx, ""); len(h) != 3 || h[0].Actor != "importer" {
		t.Errorf("history after import: %+v", h)
	}
}

func TestOverridesVersion(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	v0, err := s.OverridesVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetOverride(ctx, Override{Key: "example.com", Policy: "encrypt"}, "a"); err != nil {
		t.Fatal(err)
	}
	v1, _ := s.OverridesVersion(ctx)
	if v1 == v0 {
		t.Error("version unchanged after set")
	}
	if err := s.SetOverride(ctx, Override{Key: "example.com", Policy: "encrypt"}, "a"); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.OverridesVersion(ctx); v != v1 {
		t.Error("version changed by a no-op set")
	}
	if err := s.SetOverride(ctx, Override{Key: "example.com", Policy: "encrypt", Expires: t0.Add(time.Hour)}, "a"); err != nil {
		t.Fatal(err)
	}
	v2, _ := s.OverridesVersion(ctx)
	if v2 == v1 {
		t.Error("version unchanged after changing expiry")
	}
	if err := s.RemoveOverride(ctx, "example.com", "a"); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.OverridesVersion(ctx); v == v2 {
		t.Error("version unchanged after remove")
	}
	// Deliveries do not change the version.
	v3, _ := s.OverridesVersion(ctx)
	if _, err := s.AddDeliveries(ctx, []delivery.Delivery{testDelivery(1, t0, "example.com")}); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.OverridesVersion(ctx); v != v3 {
		t.Error("version changed by deliveries")
	}
}

func removeDB(t *testing.T, path string) {
	t.Helper()
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
}

// The daemon keeps its store open while an operator deletes the database
// and a CLI run creates a new one at the same path.
func TestOverridesVersionFileRecreated(t *testing.T) {
	ctx := context.Background()
	daemon, path := openTest(t)
	if err := daemon.SetOverride(ctx, Override{Key: "old.example", Policy: "encrypt"}, "a"); err != nil {
		t.Fatal(err)
	}
	v1, err := daemon.OverridesVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}

	removeDB(t, path)
	if _, err := daemon.OverridesVersion(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("version with file gone: %v, want ErrUnavailable", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OverridesVersion recreated the file: %v", err)
	}

	cli, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.SetOverride(ctx, Override{Key: "new.example", Policy: "verify"}, "b"); err != nil {
		t.Fatal(err)
	}
	// The new file's generation counter equals the old one (1 change
	// each); the version must differ all the same.
	v2, err := daemon.OverridesVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v2 == v1 {
		t.Errorf("version %d unchanged after the file was replaced", v2)
	}
	ovs, err := daemon.Overrides(ctx)
	if err != nil || len(ovs) != 1 || ovs[0].Key != "new.example" {
		t.Fatalf("daemon sees %+v, %v; want new.example", ovs, err)
	}
	if err := cli.SetOverride(ctx, Override{Key: "new2.example", Policy: "verify"}, "b"); err != nil {
		t.Fatal(err)
	}
	v3, _ := daemon.OverridesVersion(ctx)
	if v3 == v2 {
		t.Error("version unchanged after a change in the new file")
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}

	// Replace by rename, as a restore from backup would.
	other := filepath.Join(t.TempDir(), "other.db")
	o, err := Open(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.SetOverride(ctx, Override{Key: "restored.example", Policy: "secure"}, "c"); err != nil {
		t.Fatal(err)
	}
	w, _ := o.writer()
	if _, err := w.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	o.Close()
	removeDB(t, path)
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	v4, err := daemon.OverridesVersion(ctx)
	if err != nil || v4 == v3 {
		t.Fatalf("after rename: version %d (was %d), %v", v4, v3, err)
	}
	if ovs, _ := daemon.Overrides(ctx); len(ovs) != 1 || ovs[0].Key != "restored.example" {
		t.Errorf("after rename daemon sees %+v", ovs)
	}
}

func TestConcurrentVersionAndWrites(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	done := make(chan error)
	go func() {
		for i := 0; i < 50; i++ {
			if err := s.SetOverride(ctx, Override{Key: "example.com", Policy: []string{"encrypt", "verify"}[i%2]}, "a"); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var last uint64
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			v, err := s.OverridesVersion(ctx)
			if err != nil || v != 50 {
				t.Fatalf("final version %d, %v; want 50", v, err)
			}
			return
		default:
		}
		v, err := s.OverridesVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v < last {
			t.Fatalf("version went back: %d -> %d", last, v)
		}
		last = v
	}
}

// TestImportOverridesBlocks imports more overrides than one block, some
// already stored (unchanged, changed policy, changed expiry), and checks
// counts, created/updated times and the history.
func TestImportOverridesBlocks(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t)
	exp := t0.Add(48 * time.Hour).Truncate(time.Second)
	for _, o := range []Override{
		{Key: "d7.example", Policy: "encrypt"},
		{Key: "d600.example", Policy: "may"},
		{Key: "d1299.example", Policy: "encrypt"},
	} {
		if err := s.SetOverride(ctx, o, "first"); err != nil {
			t.Fatal(err)
		}
	}
	t1 := t0.Add(time.Hour)
	s.now = func() time.Time { return t1 }
	var ovs []Override
	for i := 0; i < 1300; i++ {
		o := Override{Key: fmt.Sprintf("d%d.example", i), Policy: "encrypt"}
		switch i {
		case 600:
			o.Policy = "verify"
		case 1299:
			o.Expires = exp
		}
		ovs = append(ovs, o)
	}
	n, err := s.ImportOverrides(ctx, ovs, "importer")
	if err != nil || n != 1299 {
		t.Fatalf("import: n=%d, %v; want 1299 (d7 is unchanged)", n, err)
	}
	got, _ := s.Overrides(ctx)
	if len(got) != 1300 {
		t.Fatalf("%d overrides stored, want 1300", len(got))
	}
	by := map[string]Override{}
	for _, o := range got {
		by[o.Key] = o
	}
	if o := by["d7.example"]; !o.Updated.Equal(t0.Truncate(time.Second)) {
		t.Errorf("unchanged d7 was rewritten: %+v", o)
	}
	if o := by["d600.example"]; o.Policy != "verify" || !o.Created.Equal(t0.Truncate(time.Second)) || !o.Updated.Equal(t1.Truncate(time.Second)) {
		t.Errorf("changed d600: %+v (want verify, created at t0, updated at t1)", o)
	}
	if o := by["d1299.example"]; !o.Expires.Equal(exp) || !o.Created.Equal(t0.Truncate(time.Second)) {
		t.Errorf("d1299: %+v (want expiry %v, created at t0)", o, exp)
	}
	if o := by["d1000.example"]; o.Policy != "encrypt" || !o.Created.Equal(t1.Truncate(time.Second)) {
		t.Errorf("new d1000: %+v", o)
	}
	h, _ := s.History(ctx, "d600.example")
	if len(h) != 2 || h[0].Old != "may" || h[0].New != "verify" || h[0].Actor != "importer" {
		t.Errorf("d600 history: %+v", h)
	}
	if h, _ := s.History(ctx, "d1000.example"); len(h) != 1 || h[0].Old != "" || h[0].New != "encrypt" {
		t.Errorf("d1000 history: %+v", h)
	}
	if h, _ := s.History(ctx, ""); len(h) != 3+1299 {
		t.Errorf("%d history rows, want %d", len(h), 3+1299)
	}
}
