package report

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/mailtls/mailtls/store"
)

// HorizonSource knows up to where `mailtls prune` deleted the raw
// deliveries (zero: never).
type HorizonSource interface {
	Horizon(ctx context.Context) (time.Time, error)
}

// Fitted is w as the store answers it when the raw deliveries before
// horizon h (zero: none) are deleted: a listing (deliveries, downgrades)
// starts at the horizon; a report keeps whole days before it, so a bound
// before it moves inward to a midnight (store.FitWindow), unless that
// leaves nothing. moved tells whether w changed.
func Fitted(w store.Window, h time.Time, listing bool) (fitted store.Window, moved bool) {
	if h.IsZero() {
		return w, false
	}
	if listing {
		if w.Since.Before(h) {
			w.Since = h
			return w, true
		}
		return w, false
	}
	s, u := store.FitWindow(w.Since, w.Until, h)
	if s.Before(u) && (!s.Equal(w.Since) || !u.Equal(w.Until)) {
		w.Since, w.Until = s, u
		return w, true
	}
	return w, false
}

// FitToHorizon is the window the commands answer for w (Fitted), and
// says on notes how deleted deliveries changed it.
func FitToHorizon(ctx context.Context, st HorizonSource, w store.Window, listing bool, notes io.Writer) (store.Window, error) {
	h, err := st.Horizon(ctx)
	if err != nil {
		return w, err
	}
	w, moved := Fitted(w, h, listing)
	if !moved {
		return w, nil
	}
	day := h.Format(time.DateOnly)
	if listing {
		fmt.Fprintf(notes, "mailtls: note: deliveries before %s (UTC) were deleted (mailtls prune); this output starts there\n", day)
	} else {
		fmt.Fprintf(notes, "mailtls: note: deliveries before %s (UTC) were deleted (mailtls prune); only whole days are kept before then, so the report covers %s\n",
			day, DescribeWindow(w))
	}
	return w, nil
}

// PruneStore deletes the raw deliveries before a time, or counts them.
type PruneStore interface {
	Prune(ctx context.Context, before time.Time) (store.PruneResult, error)
	PruneDryRun(ctx context.Context, before time.Time) (store.PruneResult, error)
}

// Prune is `mailtls prune`: it deletes (with dryRun only counts) the
// deliveries before before, whole UTC days, and says so on w.
func Prune(ctx context.Context, st PruneStore, before time.Time, dryRun bool, w io.Writer) error {
	prune, done := st.Prune, "Deleted %s deliveries logged before %s (UTC). Reports keep the daily totals of those days.\n"
	if dryRun {
		prune, done = st.PruneDryRun, "Would delete %s deliveries logged before %s (UTC). Nothing changed (--dry-run).\n"
	}
	res, err := prune(ctx, before)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, done, Num(res.Deleted), res.Horizon.Format(time.DateOnly))
	return err
}
