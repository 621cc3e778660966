package published

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailtls/mailtls/store"
)

// The SQLite store logs answers when the resolver saves them.
var _ AnswerStore = (*store.Store)(nil)

// TestAnswerLogFromResolver: resolutions that the resolver persists to the
// store append to the answer log only when the answer changes, at the
// (fake) time they were resolved; a testing policy is logged as none with
// its policy id.
func TestAnswerLogFromResolver(t *testing.T) {
	e := newEnv(t)
	e.zone.Add(t, "sts.example. 300 IN MX 10 mx1.sts.example.", "mx1.sts.example. 300 IN A 127.0.0.1")
	e.sts("sts.example", "7")
	e.policy("sts.example", "version: STSv1\nmode: enforce\nmx: mx1.sts.example\nmax_age: 86400\n")
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "mailtls.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := e.resolver(func(c *Config) { c.Store = st })
	logged := func() []store.AnswerChange {
		t.Helper()
		var out []store.AnswerChange
		if err := st.AnswerLog(ctx, "sts.example", func(a store.AnswerChange) error { out = append(out, a); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	t1 := e.clock.Now()
	resolve(t, r, "sts.example")
	e.clock.Advance(10 * time.Minute) // past the TXT TTL: asked again, same id
	resolve(t, r, "sts.example")
	got := logged()
	if len(got) != 1 || got[0].Source != "mta-sts" || got[0].PolicyID != "7" || got[0].Policy != "secure match=mx1.sts.example servername=hostname" || !got[0].At.Equal(t1) {
		t.Fatalf("after two resolutions of one answer: %+v, want one mta-sts row id 7 at %s", got, t1)
	}

	e.zone.Remove("_mta-sts.sts.example", 16) // TXT
	e.sts("sts.example", "8")
	e.policy("sts.example", "version: STSv1\nmode: testing\nmx: mx1.sts.example\nmax_age: 86400\n")
	e.clock.Advance(10 * time.Minute)
	t2 := e.clock.Now()
	resolve(t, r, "sts.example")
	got = logged()
	if len(got) != 2 || got[1].Source != "none" || got[1].Policy != "" || got[1].PolicyID != "8" || !got[1].At.Equal(t2) {
		t.Fatalf("after the policy turned testing: %+v, want a second row none id 8 at %s", got, t2)
	}
}
