package report

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailtls/mailtls/discover"
	"github.com/mailtls/mailtls/output"
	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/store"
)

// OverrideStore is the part of the store `mailtls check` reads and, with
// --apply, sets a domain's override through.
type OverrideStore interface {
	Overrides(ctx context.Context) ([]store.Override, error)
	SetOverride(ctx context.Context, o store.Override, actor string) error
}

// CurrentOverride returns the policy of the exact override for key, or
// nil when there is none.
func CurrentOverride(ctx context.Context, st OverrideStore, key string) (*string, error) {
	ovs, err := st.Overrides(ctx)
	if err != nil {
		return nil, err
	}
	for _, o := range ovs {
		if o.Key == key {
			p := o.Policy
			return &p, nil
		}
	}
	return nil, nil
}

// ApplyRecommendation sets the recommended policy as the override for
// key, as rec.Apply decides over the current policy cur (nil: none);
// lowered tells that force was needed. The note records the day (of now)
// and the recommended level.
func ApplyRecommendation(ctx context.Context, st OverrideStore, actor, key string, rec discover.Recommendation, cur *string, force bool, now time.Time) (applied, lowered bool, err error) {
	a, err := rec.Apply(key, cur, force)
	if err != nil || !a.Set {
		return false, a.Lowered, err
	}
	o := store.Override{Key: key, Policy: a.Policy.String(),
		Note: fmt.Sprintf("set by mailtls check on %s: %s", now.UTC().Format("2006-01-02"), rec.Level)}
	if err := st.SetOverride(ctx, o, actor); err != nil {
		return false, a.Lowered, err
	}
	return true, a.Lowered, nil
}

// DomainCheck is `mailtls check DOMAIN` as the command reads it: the
// domain and the flags, unchecked (Checker checks them).
type DomainCheck struct {
	Domain, Resolver, Timeout, HELO  string
	Port                             int
	JSON, Apply, Force, AllowPrivate bool
	Actor                            string // who --apply writes as
}

// DomainCheckStore is what check reads our records through and, with --apply,
// sets the override through; the check closes it.
type DomainCheckStore interface {
	HistoryStore
	OverrideStore
	Close() error
}

// Checker validates the request into the domain, its override key and
// the checker that probes it.
func (q DomainCheck) Checker() (domain, key string, chk *discover.Checker, err error) {
	domain, err = discover.NormalizeDomain(q.Domain)
	if err != nil {
		return "", "", nil, inputErrorf("%v", err)
	}
	key, err = policyd.NormalizeKey(domain)
	if err != nil || strings.HasPrefix(key, ".") || strings.HasPrefix(key, "[") {
		return "", "", nil, inputErrorf("invalid DOMAIN %q (want a mail domain such as example.com)", q.Domain)
	}
	if q.Port < 1 || q.Port > 65535 {
		return "", "", nil, inputErrorf("invalid --port %d (want 1-65535)", q.Port)
	}
	timeout, err := ParseDuration(q.Timeout)
	if err != nil || timeout < time.Second || timeout > 10*time.Minute {
		return "", "", nil, inputErrorf("invalid --timeout %q (want a duration from 1s to 10m, e.g. 30s)", q.Timeout)
	}
	if q.HELO != "" && (strings.ContainsAny(q.HELO, " \t\r\n") || len(q.HELO) > 255) {
		return "", "", nil, inputErrorf("invalid --helo %q (want a host name without spaces)", q.HELO)
	}
	if q.Force && !q.Apply {
		return "", "", nil, inputErrorf("--force only goes with --apply (mailtls check DOMAIN --apply --force)")
	}
	res, err := discover.NewResolver(q.Resolver, "")
	if err != nil {
		return "", "", nil, inputErrorf("%v", err)
	}
	return domain, key, &discover.Checker{Resolver: res, Timeout: timeout, Port: q.Port, HELO: q.HELO, AllowPrivate: q.AllowPrivate}, nil
}

// Run is `mailtls check`: the probe of the domain, what our
// records (opened by open, after the probe) say of it, the override in
// force and, with Apply, the recommendation set as the override; written
// to w as JSON or text. Without Apply a store that cannot be read is
// reported in the output instead of failing the check.
func (q DomainCheck) Run(ctx context.Context, open func() (DomainCheckStore, error), w io.Writer) error {
	domain, key, chk, err := q.Checker()
	if err != nil {
		return err
	}
	rep, err := chk.Check(ctx, domain)
	if errors.Is(err, discover.ErrBadInput) {
		return inputErrorf("%v", err)
	} else if err != nil {
		return err
	}
	out := discover.Result{Report: rep}
	st, stErr := open()
	if stErr == nil {
		defer st.Close()
		out.History, stErr = DomainHistory(ctx, st, domain, time.Now())
		if stErr == nil {
			out.CurrentOverride, stErr = CurrentOverride(ctx, st, key)
		}
	}
	if stErr != nil {
		if q.Apply {
			return stErr
		}
		out.HistoryError = stErr.Error()
	}
	var applyErr error
	lowered := false
	if q.Apply {
		out.Applied, lowered, applyErr = ApplyRecommendation(ctx, st, q.Actor, key, rep.Recommendation, out.CurrentOverride, q.Force, time.Now())
	}
	if q.JSON {
		if err := output.JSON(w, out); err != nil {
			return err
		}
	} else if err := discover.WriteText(w, out, historySummary(out), checkTable); err != nil {
		return err
	}
	if applyErr != nil {
		return applyErr
	}
	if advice := out.Advice(key, q.Apply, lowered); advice != "" && !q.JSON {
		fmt.Fprintf(w, "\n%s\n", advice)
	}
	return nil
}

// checkTable renders check's MX table through the one output helper.
func checkTable(w io.Writer, header []string, rows [][]string) error {
	t := output.NewTable(header...).AlignRight(0)
	for _, r := range rows {
		t.Add(r...)
	}
	return t.WriteText(w)
}

// historySummary is the History line of the text report.
func historySummary(out discover.Result) string {
	if out.HistoryError != "" {
		return "unavailable: " + out.HistoryError
	}
	h := out.History
	if h == nil || h.Deliveries == 0 {
		return fmt.Sprintf("no deliveries to %s recorded in the last %d days", out.Domain, discover.HistoryDays)
	}
	s := fmt.Sprintf("last %d days: %s sent, %s encrypted, %s plaintext", discover.HistoryDays, Num(h.Deliveries), Num(h.Encrypted), Num(h.Plaintext))
	if h.Unknown > 0 {
		s += ", " + Num(h.Unknown) + " unknown"
	}
	if h.Encrypted+h.Plaintext > 0 {
		s += fmt.Sprintf(" (%s of known encrypted)", output.Pct(h.Coverage))
	}
	if tr := TrustLine(h.ByTrust); tr != "-" {
		s += "; trust " + tr
	}
	if h.LastPlaintext != nil {
		s += "; last plaintext " + output.Time(*h.LastPlaintext)
	}
	return s
}
