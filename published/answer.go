package published

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailtls/mailtls/output"
	"github.com/mailtls/mailtls/policyd"
)

// Answer is what `mailtls lookup` shows for a next-hop: the answer the
// daemon gives (Result, the overrides and the default, with the published
// answer applied by policyd.WithPublished) and, when the published
// sources were consulted and knew the destination, their evidence.
type Answer struct {
	Key       string
	Result    policyd.Result
	Published *Result // nil: not consulted, or not in the cache
	// Consulted: the published sources are in force (--sources).
	Consulted bool
}

// NewAnswer is the answer for key whose override lookup is r, as the
// daemon gives it: after an override miss, and only when the published
// sources are consulted, the published answer that pub returns (nil: not
// known) is applied.
func NewAnswer(key string, r policyd.Result, consulted bool, pub func() (*Result, error)) (Answer, error) {
	var p *Result
	if consulted && (r.Rule == policyd.RuleDefault || r.Rule == policyd.RuleNotFound) {
		var err error
		if p, err = pub(); err != nil {
			return Answer{}, err
		}
		if p != nil && p.Policy != "" {
			r = policyd.WithPublished(key, r, policyd.Published{Value: p.Policy, Source: string(p.Source)})
		}
	}
	return Answer{Key: key, Result: r, Published: p, Consulted: consulted}, nil
}

// Lookup is `mailtls lookup`'s answer for key at now: the overrides of
// src (nil: not in force) under the default def, then, as NewAnswer
// consults them, the published sources (pub).
func Lookup(ctx context.Context, key, def string, src policyd.Source, now time.Time, consulted bool, pub func() (*Result, error)) (Answer, error) {
	b := policyd.NewBuilder(def, 0)
	if src != nil {
		if err := src.Overrides(ctx, b.Add); err != nil {
			return Answer{}, err
		}
	}
	return NewAnswer(key, b.Snapshot().Lookup(key, now), consulted, pub)
}

// Show is the published result of key as `mailtls lookup` shows it: the
// daemon's cached answer, loaded from r's store (nil: not cached), or
// with resolve resolved now. A failed load is only a warning (warn).
func (r *Resolver) Show(ctx context.Context, key string, resolve bool, warn func(error)) (*Result, error) {
	if _, err := r.Load(ctx); err != nil {
		warn(err)
	}
	if !resolve {
		got, ok := r.Cached(key)
		if !ok {
			return nil, nil
		}
		return &got, nil
	}
	r.Start()
	got, err := r.Resolve(ctx, key)
	r.Close()
	if err != nil {
		return nil, err
	}
	return &got, nil
}

// Write writes the answer as JSON (JSON) or as text (Lines).
func (a Answer) Write(w io.Writer, json bool) error {
	if json {
		return output.JSON(w, a.JSON())
	}
	for _, l := range a.Lines() {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return err
		}
	}
	return nil
}

// JSON is the answer as `mailtls lookup --format json` writes it.
func (a Answer) JSON() map[string]any {
	r := a.Result
	rule, source, _ := r.Explain()
	answer := "NOTFOUND"
	if r.Found {
		answer = "OK " + r.Value
	}
	out := map[string]any{
		"key": a.Key, "found": r.Found, "value": r.Value, "answer": answer,
		"rule": rule, "source": source, "matched": r.Key, "expired": r.Expired,
	}
	if a.Published != nil {
		out["published"] = a.Published
		out["cache_age_seconds"] = int64(a.Published.CacheAge.Seconds())
	}
	return out
}

// Lines is the answer as text: the key, the answer and why, then the
// published evidence.
func (a Answer) Lines() []string {
	r := a.Result
	_, _, why := r.Explain()
	answer := "NOTFOUND (main.cf smtp_tls_security_level applies)"
	if r.Found {
		answer = r.Value
	}
	out := []string{a.Key + "  " + answer + "  (" + why + ")"}
	switch pub := a.Published; {
	case pub != nil:
		out = append(out, pub.Describe()...)
		if pub.Policy != "" && r.Rule != policyd.RulePublished {
			out = append(out, "  not used: the default is as strong or stronger, or the answer would let some MX hosts fall back to weaker TLS than the default")
		}
	case (r.Rule == policyd.RuleDefault || r.Rule == policyd.RuleNotFound) && a.Consulted && !strings.ContainsAny(a.Key, "[]:"):
		out = append(out, "published: not in the daemon's cache yet (it resolves a destination at its first lookup; --resolve looks it up now)")
	}
	return out
}
