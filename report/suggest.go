package report

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/mailtls/mailtls/output"
	"github.com/mailtls/mailtls/store"
)

// SuggestSource is what `mailtls suggest` reads and, with --apply, writes.
type SuggestSource interface {
	Suggest(ctx context.Context, minDeliveries, minDays int, now time.Time, includeInternal bool) ([]store.Suggestion, error)
	Overrides(ctx context.Context) ([]store.Override, error)
	SetOverride(ctx context.Context, o store.Override, actor string) error
}

var _ SuggestSource = (*store.Store)(nil)

// SuggestQuery is what qualifies a destination (see store.Suggest).
type SuggestQuery struct {
	MinDeliveries, MinDays int
	IncludeInternal        bool
}

// Suggestions are the destinations the history says could be forced to
// TLS, less those that have an override already.
func Suggestions(ctx context.Context, src SuggestSource, q SuggestQuery, now time.Time) ([]store.Suggestion, error) {
	sugg, err := src.Suggest(ctx, q.MinDeliveries, q.MinDays, now, q.IncludeInternal)
	if err != nil {
		return nil, err
	}
	ovs, err := src.Overrides(ctx)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, o := range ovs {
		have[o.Key] = true
	}
	var todo []store.Suggestion
	for _, s := range sugg {
		if !have[s.Domain] {
			todo = append(todo, s)
		}
	}
	return todo, nil
}

// Suggestion is one row of `suggest --format json`.
type Suggestion struct {
	Domain     string `json:"domain"`
	Level      string `json:"level"`
	Deliveries int64  `json:"deliveries"`
	Days       int64  `json:"days"`
	FirstSeen  string `json:"first_seen"`
	LastSeen   string `json:"last_seen"`
}

// WriteSuggestionsJSON writes {"suggestions":[...]}.
func WriteSuggestionsJSON(w io.Writer, todo []store.Suggestion) error {
	out := make([]Suggestion, 0, len(todo))
	for _, s := range todo {
		out = append(out, Suggestion{s.Domain, s.Level, s.Deliveries, s.Days, RFC3339(s.FirstSeen), RFC3339(s.LastSeen)})
	}
	return output.JSON(w, map[string]any{"suggestions": out})
}

// WriteSuggestions renders the suggestions as "csv" or a text table;
// with none, it says so in a sentence (in either format).
func WriteSuggestions(w io.Writer, format string, q SuggestQuery, todo []store.Suggestion) error {
	if len(todo) == 0 {
		_, err := fmt.Fprintf(w, "Nothing to suggest: no destination without an override has %d+ all-encrypted deliveries over %d+ days.\n",
			q.MinDeliveries, q.MinDays)
		return err
	}
	t := output.NewTable("DOMAIN", "SUGGEST", "DELIVERIES", "DAYS", "LAST SEEN").AlignRight(2, 3)
	for _, s := range todo {
		t.Add(s.Domain, s.Level, Num(s.Deliveries), output.Itoa(s.Days), output.Time(s.LastSeen))
	}
	return t.Write(w, format)
}

// ApplySuggestions sets each suggestion as an override, noting why.
func ApplySuggestions(ctx context.Context, src SuggestSource, todo []store.Suggestion, actor string) error {
	for _, s := range todo {
		o := store.Override{Key: s.Domain, Policy: s.Level,
			Note: fmt.Sprintf("suggested by mailtls: %d deliveries over %d days, all encrypted", s.Deliveries, s.Days)}
		if err := src.SetOverride(ctx, o, actor); err != nil {
			return err
		}
	}
	return nil
}
