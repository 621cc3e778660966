package report

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/store"
)

type horizonAt time.Time

func (h horizonAt) Horizon(context.Context) (time.Time, error) { return time.Time(h), nil }

// TestFitted: a listing starts at the horizon; a report keeps the whole
// days before it; nothing moves without a horizon.
func TestFitted(t *testing.T) {
	h := time.Date(2026, 5, 10, 0, 0, 0, 0, time.UTC)
	w := store.Window{Since: h.Add(-36 * time.Hour), Until: h.Add(48 * time.Hour)}
	if got, moved := Fitted(w, time.Time{}, true); moved || got != w {
		t.Errorf("no horizon: %v %v", got, moved)
	}
	if got, moved := Fitted(w, h, true); !moved || !got.Since.Equal(h) || !got.Until.Equal(w.Until) {
		t.Errorf("listing: %v %v", got, moved)
	}
	if got, moved := Fitted(w, h, false); !moved || !got.Since.Equal(h.Add(-24*time.Hour)) {
		t.Errorf("report: %v %v, want since the midnight a day before the horizon", got, moved)
	}
	if _, moved := Fitted(store.Window{Since: h.Add(-24 * time.Hour), Until: h}, h, false); moved {
		t.Error("a window of whole days moved")
	}
	var notes bytes.Buffer
	if _, err := FitToHorizon(context.Background(), horizonAt(h), w, true, &notes); err != nil || !strings.Contains(notes.String(), "deliveries before 2026-05-10 (UTC) were deleted") {
		t.Errorf("note: %q, %v", notes.String(), err)
	}
}

func TestParseRetention(t *testing.T) {
	if d, err := ParseRetention("400d", "--keep"); err != nil || d != 400*24*time.Hour {
		t.Errorf("400d: %v, %v", d, err)
	}
	for _, s := range []string{"12h", "xx"} {
		if _, err := ParseRetention(s, "--keep"); err == nil || !strings.HasPrefix(err.Error(), "--keep") {
			t.Errorf("%s: %v", s, err)
		}
	}
}
