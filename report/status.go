package report

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/output"
	"github.com/mailtls/mailtls/store"
)

// StatusSource is what `mailtls status` reads.
type StatusSource interface {
	PolicySource
	Status(ctx context.Context, now time.Time) (store.Status, error)
	ForcedPlaintextIn(ctx context.Context, w store.Window) ([]store.ForcedPlaintext, error)
}

var _ StatusSource = (*store.Store)(nil)

// FollowerStatus is how far a follower got, from its stored checkpoint.
type FollowerStatus struct {
	Host    string    `json:"host"` // the fleet host it writes as
	Source  string    `json:"source"`
	Updated time.Time `json:"updated"`     // last commit (UTC, whole seconds)
	Lag     int64     `json:"lag_seconds"` // since the last commit
	// Behind is the number of bytes of the followed file not yet recorded,
	// or -1 when unknown (journald, or the file was rotated since).
	Behind int64  `json:"behind_bytes"`
	Stale  bool   `json:"stale"`
	Note   string `json:"note,omitempty"`
}

// HostStatus is one fleet host: what it stored, and whether its followers
// keep up.
type HostStatus struct {
	Name       string `json:"name"`
	Deliveries int64  `json:"deliveries"`  // counted in reports
	LastCommit string `json:"last_commit"` // of its followers, RFC 3339; "" if none
	Lag        int64  `json:"lag_seconds"` // since LastCommit; -1 if none
	Stale      bool   `json:"stale"`       // one of its followers is stale

	commit time.Time // LastCommit, for the text
}

// StatusJSON is `mailtls status --format json`.
type StatusJSON struct {
	DB               string           `json:"db"`
	DBBytes          int64            `json:"db_bytes"`
	Overrides        int64            `json:"overrides"`
	OverridesExpired int64            `json:"overrides_expired"`
	LastOverrideEdit string           `json:"last_override_change"`
	LastOverrideBy   string           `json:"last_override_change_by"`
	Counted          int64            `json:"deliveries_counted"`
	Stored           int64            `json:"deliveries_stored"`
	First            string           `json:"first_delivery"`
	Last             string           `json:"last_delivery"`
	PrunedBefore     string           `json:"pruned_before"`
	Hosts            []HostStatus     `json:"hosts"`
	Followers        []FollowerStatus `json:"followers"`
	// Warnings: plaintext sent to destinations forced to a mandatory
	// level, in the --since window (as in report overrides).
	Warnings []Warning `json:"warnings"`
	// PolicyWarnings: published enforce and DANE policies that recorded
	// deliveries since --since would have failed (as in report policies).
	// They do not change the exit code.
	PolicyWarnings []string `json:"policy_warnings"`
}

// StatusQuery is what `mailtls status` asks.
type StatusQuery struct {
	Now, Since time.Time
	Stale      time.Duration // a follower with unread lines and no commit for this long is stale
	Host       string        // only this fleet host; "" for all
}

// Status is what `mailtls status` shows.
type Status struct {
	Store     store.Status
	Hosts     []HostStatus
	Followers []FollowerStatus
	// Forced is plaintext sent to forced destinations since Since.
	Forced         []store.ForcedPlaintext
	PolicyWarnings []string
}

// LoadStatus reads the status of the database, its hosts and followers.
func LoadStatus(ctx context.Context, src StatusSource, q StatusQuery) (*Status, error) {
	s, err := src.Status(ctx, q.Now)
	if err != nil {
		return nil, err
	}
	w := store.Window{Since: q.Since, Until: q.Now}
	warns, err := src.ForcedPlaintextIn(ctx, w)
	if err != nil {
		return nil, err
	}
	pol, err := LoadPolicies(ctx, src, w)
	if err != nil {
		return nil, err
	}
	fs := followers(s.Checkpoints, q.Now, q.Stale, q.Host)
	return &Status{Store: s, Hosts: hosts(s.Hosts, fs, q.Now, q.Host), Followers: fs, Forced: warns, PolicyWarnings: pol.Warnings}, nil
}

// JSON is the `status --format json` view.
func (st *Status) JSON() StatusJSON {
	s := st.Store
	return StatusJSON{
		DB: s.Path, DBBytes: s.Bytes, Overrides: s.Overrides, OverridesExpired: s.Expired,
		LastOverrideEdit: RFC3339(s.LastEdit), LastOverrideBy: s.LastActor,
		Counted: s.Counted, Stored: s.Stored, First: RFC3339(s.First), Last: RFC3339(s.Last),
		PrunedBefore: RFC3339(s.PrunedBefore), Hosts: st.Hosts, Followers: st.Followers, Warnings: NewWarnings(st.Forced),
		PolicyWarnings: st.PolicyWarnings,
	}
}

// WriteStatus loads the status q asks for and writes it as "json" or
// text. Its error is why `status` exits 1: --host names no stored host,
// a follower is stale, or a destination forced to a mandatory level got
// plaintext.
func WriteStatus(ctx context.Context, src StatusSource, w io.Writer, format string, q StatusQuery) error {
	s, err := LoadStatus(ctx, src, q)
	if err != nil {
		return err
	}
	if q.Host != "" && len(s.Hosts) == 0 {
		return fmt.Errorf("no fleet host %q in %s (it has stored nothing)", q.Host, s.Store.Path)
	}
	if format == "json" {
		err = output.JSON(w, s.JSON())
	} else {
		err = s.WriteText(w)
	}
	if err != nil {
		return err
	}
	return s.problem(q)
}

// problem is the error of a status that calls for exit 1, or nil.
func (st *Status) problem(q StatusQuery) error {
	if f := st.StaleFollower(); f != nil {
		return fmt.Errorf("follower %s of host %s is stale: %s behind, nothing recorded since %s (more than --stale %s)",
			output.Escape(f.Source), f.Host, output.Bytes(f.Behind), RFC3339(f.Updated), q.Stale)
	}
	if n := len(st.Forced); n > 0 {
		what := "1 destination"
		if n != 1 {
			what = fmt.Sprintf("%d destinations", n)
		}
		return fmt.Errorf("%s got plaintext while forced to a mandatory TLS level since %s: Postfix is not asking mailtls for it",
			what, RFC3339(q.Since))
	}
	return nil
}

// StaleFollower is the first stale follower, or nil.
func (st *Status) StaleFollower() *FollowerStatus {
	for i := range st.Followers {
		if st.Followers[i].Stale {
			return &st.Followers[i]
		}
	}
	return nil
}

// followers compares each file checkpoint (of host, or of every host when
// host is "") with the file it names now.
func followers(cps []store.CheckpointInfo, now time.Time, stale time.Duration, host string) []FollowerStatus {
	out := []FollowerStatus{}
	for _, c := range cps {
		if host != "" && c.Host != host {
			continue
		}
		out = append(out, follower(c, now, stale))
	}
	return out
}

func follower(c store.CheckpointInfo, now time.Time, stale time.Duration) FollowerStatus {
	f := FollowerStatus{Host: c.Host, Source: c.Source, Updated: c.Updated, Behind: -1, Lag: lagSeconds(now, c.Updated)}
	cp, err := logparse.UnmarshalCheckpoint(c.Data)
	if err != nil {
		f.Note = "checkpoint unreadable: " + err.Error()
		return f
	}
	n, ok, err := cp.Unread()
	switch {
	case err != nil:
		f.Note = err.Error()
	case !ok && cp.Cursor != "":
		f.Note = "journald: position is a cursor"
	case !ok:
		f.Note = "the log was rotated since the last commit"
	default:
		f.Behind = n
		f.Stale = n > 0 && now.Sub(c.Updated) > stale
	}
	return f
}

func lagSeconds(now, t time.Time) int64 {
	return max(0, int64(now.Sub(t)/time.Second))
}

// hosts is the per-host part of status: hs (of host, or all when host
// is ""), stale when one of its followers in fs is.
func hosts(hs []store.HostInfo, fs []FollowerStatus, now time.Time, host string) []HostStatus {
	out := []HostStatus{}
	for _, h := range hs {
		if host != "" && h.Name != host {
			continue
		}
		j := HostStatus{Name: h.Name, Deliveries: h.Counted, LastCommit: RFC3339(h.LastCommit), Lag: -1, commit: h.LastCommit}
		if !h.LastCommit.IsZero() {
			j.Lag = lagSeconds(now, h.LastCommit)
		}
		for _, f := range fs {
			j.Stale = j.Stale || (f.Host == h.Name && f.Stale)
		}
		out = append(out, j)
	}
	return out
}

// WriteText renders the status as lines of "Label       text", its
// warnings last.
func (st *Status) WriteText(w io.Writer) error {
	writeStoreStatus(w, st.Store)
	for _, h := range st.Hosts {
		line := Num(h.Deliveries) + " deliveries"
		if h.Lag >= 0 {
			line += fmt.Sprintf(", last commit %s (%s ago)", output.Time(h.commit), time.Duration(h.Lag)*time.Second)
		} else {
			line += ", no follower commit"
		}
		if h.Stale {
			line += ", STALE"
		}
		fmt.Fprintf(w, "Host        %s: %s\n", output.Escape(h.Name), line)
	}
	if len(st.Followers) == 0 {
		fmt.Fprintln(w, "Follower    none has run on this database (mailtls run, or mailtls follow)")
	}
	for _, f := range st.Followers {
		state := []string{"last commit " + output.Time(f.Updated)}
		if f.Behind >= 0 {
			state = append(state, output.Bytes(f.Behind)+" behind")
		}
		if f.Note != "" {
			state = append(state, f.Note)
		}
		if f.Stale {
			state = append(state, "STALE")
		}
		fmt.Fprintf(w, "Follower    %s %s: %s\n", output.Escape(f.Host), output.Escape(f.Source), output.Escape(strings.Join(state, ", ")))
	}
	for _, x := range st.Forced {
		fmt.Fprintf(w, "Warning     %s\n", output.Escape(WarningMessage(x)))
	}
	for _, x := range st.PolicyWarnings {
		fmt.Fprintf(w, "Warning     %s\n", output.Escape(x))
	}
	return nil
}

// writeStoreStatus is the database's part of the status text.
func writeStoreStatus(w io.Writer, s store.Status) {
	fmt.Fprintf(w, "Database    %s (%s)\n", output.Escape(s.Path), output.Bytes(s.Bytes))
	ov := Num(s.Overrides)
	if s.Expired > 0 {
		ov += fmt.Sprintf(" (%s expired)", Num(s.Expired))
	}
	if !s.LastEdit.IsZero() {
		ov += fmt.Sprintf("; last change %s by %s", output.Time(s.LastEdit), output.Escape(s.LastActor))
	}
	fmt.Fprintf(w, "Overrides   %s\n", ov)
	if s.Counted == 0 {
		fmt.Fprintln(w, "Deliveries  none recorded yet")
	} else {
		line := fmt.Sprintf("%s stored", Num(s.Stored))
		if !s.First.IsZero() {
			line += fmt.Sprintf(", %s to %s", output.Time(s.First), output.Time(s.Last))
		}
		if s.Counted != s.Stored {
			line += fmt.Sprintf("; %s counted in reports", Num(s.Counted))
		}
		fmt.Fprintf(w, "Deliveries  %s\n", line)
	}
	if !s.PrunedBefore.IsZero() {
		fmt.Fprintf(w, "Pruned      before %s (UTC); daily totals kept\n", s.PrunedBefore.Format(time.DateOnly))
	}
}
