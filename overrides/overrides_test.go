package overrides

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/store"
	"github.com/mailtls/mailtls/store/storetest"
)

// fakeStore keeps overrides in memory and records the actor of each change.
type fakeStore struct {
	ovs    []store.Override
	actors []string
}

func (f *fakeStore) SetOverride(_ context.Context, o store.Override, actor string) error {
	f.ovs, f.actors = append(f.ovs, o), append(f.actors, actor)
	return nil
}

func (f *fakeStore) RemoveOverride(_ context.Context, key, actor string) error {
	for i, o := range f.ovs {
		if o.Key == key {
			f.ovs, f.actors = append(f.ovs[:i], f.ovs[i+1:]...), append(f.actors, actor)
			return nil
		}
	}
	return store.ErrNotFound
}

func (f *fakeStore) ImportOverrides(_ context.Context, ovs []store.Override, actor string) (int, error) {
	f.ovs, f.actors = append(f.ovs, ovs...), append(f.actors, actor)
	return len(ovs), nil
}

func (f *fakeStore) Overrides(context.Context) ([]store.Override, error) { return f.ovs, nil }

func (f *fakeStore) History(context.Context, string) ([]store.Change, error) {
	return []store.Change{{Key: "example.com", New: "encrypt", Actor: "ops", At: time.Unix(0, 0)}}, nil
}

// The SQLite store, and any backend that passes store/storetest, is an
// overrides Store.
var (
	_ Store = (*store.Store)(nil)
	_ Store = storetest.Backend(nil)
)

func TestBadInputIsUsage(t *testing.T) {
	now := time.Now()
	for _, err := range []error{
		func() error { _, err := Key(nil, false, "want one KEY"); return err }(),
		func() error { _, err := Key([]string{"a", "b"}, true, "at most one KEY"); return err }(),
		func() error { _, err := Key([]string{"bad key!"}, false, ""); return err }(),
		func() error { _, err := ParseSet([]string{"example.com"}, "", "", now); return err }(),
		func() error { _, err := ParseSet([]string{"example.com", "bogus"}, "", "", now); return err }(),
		func() error { _, err := ParseSet([]string{"example.com", "encrypt"}, "a\nb", "", now); return err }(),
		func() error { _, err := ParseSet([]string{"example.com", "encrypt"}, "", "0d", now); return err }(),
		func() error { _, err := ReadImport(nil, nil); return err }(),
		func() error { _, err := ReadImport([]string{"-"}, strings.NewReader("x.example bogus\n")); return err }(),
	} {
		if !errors.Is(err, ErrBadInput) {
			t.Errorf("%v: not ErrBadInput", err)
		}
	}
	if k, err := Key(nil, true, ""); k != "" || err != nil {
		t.Errorf("no optional key: %q, %v", k, err)
	}
}

func TestSetWriteRemoveExport(t *testing.T) {
	ctx, now := context.Background(), time.Now()
	st := &fakeStore{}
	s, err := ParseSet([]string{"Example.COM", "encrypt"}, "ticket 42", "30d", now)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := s.Write(ctx, st, "ops", &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "example.com -> encrypt (expires ") || st.actors[0] != "ops" || st.ovs[0].Note != "ticket 42" {
		t.Errorf("set: %q, %+v", out.String(), st)
	}
	st.ovs = append(st.ovs, store.Override{Key: "old.example", Policy: "verify", Expires: now.Add(-time.Hour)})
	out.Reset()
	if err := Export(ctx, st, now, &out); err != nil || !strings.Contains(out.String(), "example.com") || strings.Contains(out.String(), "old.example") {
		t.Errorf("export without the expired override: %q, %v", out.String(), err)
	}
	if err := Remove(ctx, st, "none.example", "ops", &out); err == nil || !strings.Contains(err.Error(), "no override for") {
		t.Errorf("remove of a missing key: %v", err)
	}
}

func TestViews(t *testing.T) {
	ctx, now := context.Background(), time.Now()
	var out bytes.Buffer
	if err := List(ctx, &fakeStore{}, "table", now, &out); err != nil || !strings.HasPrefix(out.String(), "No overrides set") {
		t.Errorf("empty list: %q, %v", out.String(), err)
	}
	out.Reset()
	if err := List(ctx, &fakeStore{}, "json", now, &out); err != nil || out.String() != "[]\n" {
		t.Errorf("empty JSON list: %q, %v", out.String(), err)
	}
	out.Reset()
	if err := History(ctx, &fakeStore{}, "", "csv", &out); err != nil || !strings.Contains(out.String(), "example.com,-,encrypt,ops") {
		t.Errorf("history CSV: %q, %v", out.String(), err)
	}
}
