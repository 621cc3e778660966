package overrides

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mailtls/mailtls/output"
	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/report"
	"github.com/mailtls/mailtls/store"
)

// Store is the part of the store the policy commands (and check --apply)
// change and read, each change recorded in the history with who made it
// and when.
type Store interface {
	SetOverride(ctx context.Context, o store.Override, actor string) error
	RemoveOverride(ctx context.Context, key, actor string) error
	ImportOverrides(ctx context.Context, ovs []store.Override, actor string) (int, error)
	Overrides(ctx context.Context) ([]store.Override, error)
	History(ctx context.Context, key string) ([]store.Change, error)
}

// ErrBadInput marks arguments the operator spelled wrong. Its message is
// one line naming what was wrong and what would be accepted.
var ErrBadInput = errors.New("overrides: invalid input")

type inputError struct{ msg string }

func (e *inputError) Error() string        { return e.msg }
func (e *inputError) Is(target error) bool { return target == ErrBadInput }

func inputErrorf(format string, args ...any) error {
	return &inputError{msg: fmt.Sprintf(format, args...)}
}

// Key is the one KEY of args in normal form; usage is the error when
// args hold more than one key, or none unless optional ("" then).
func Key(args []string, optional bool, usage string) (string, error) {
	if len(args) > 1 || len(args) == 0 && !optional {
		return "", inputErrorf("%s", usage)
	}
	if len(args) == 0 {
		return "", nil
	}
	key, err := policyd.NormalizeKey(args[0])
	if err != nil {
		return "", inputErrorf("%v", err)
	}
	return key, nil
}

// Set is one `policy set`: the override to write.
type Set struct {
	Key     string
	Policy  policyd.Policy
	Note    string
	Expires time.Time // zero: never
}

// ParseSet reads `policy set KEY LEVEL [ATTR=VALUE ...]` with its --note
// and --expires (a duration from now).
func ParseSet(args []string, note, expires string, now time.Time) (Set, error) {
	if len(args) < 2 {
		return Set{}, inputErrorf("policy set needs KEY and LEVEL (e.g. mailtls policy set example.com encrypt)")
	}
	key, p, err := policyd.ParseOverride(args)
	if err != nil {
		return Set{}, inputErrorf("%v", err)
	}
	if strings.ContainsAny(note, "\r\n") {
		return Set{}, inputErrorf("--note must be a single line")
	}
	s := Set{Key: key, Policy: p, Note: note}
	if expires != "" {
		d, err := report.ParseDuration(expires)
		if err != nil || d <= 0 {
			return Set{}, inputErrorf("--expires: invalid duration %q (want e.g. 12h, 30d, 2w)", expires)
		}
		s.Expires = now.Add(d)
	}
	return s, nil
}

// Write stores the override as actor and says so on w.
func (s Set) Write(ctx context.Context, st Store, actor string, w io.Writer) error {
	o := store.Override{Key: s.Key, Policy: s.Policy.String(), Note: s.Note, Expires: s.Expires}
	if err := st.SetOverride(ctx, o, actor); err != nil {
		return err
	}
	msg := fmt.Sprintf("%s -> %s", s.Key, s.Policy.String())
	if !s.Expires.IsZero() {
		msg += fmt.Sprintf(" (expires %s)", output.Time(s.Expires))
	}
	_, err := fmt.Fprintln(w, msg)
	return err
}

// DryRunner is the store's estimate of what a level would have deferred.
type DryRunner interface {
	DryRun(ctx context.Context, key, level string, since time.Time) (store.DryRunResult, error)
}

// DryRun is `policy set --dry-run`: what the deliveries since the --since
// value say the override would have done (store.DryRun's one rule of
// what a level defers), changing nothing.
func (s Set) DryRun(ctx context.Context, st DryRunner, since string, now time.Time, w io.Writer) error {
	from, err := report.ParseWhen(since, now)
	if err != nil {
		return inputErrorf("--since: %v", err)
	}
	r, err := st.DryRun(ctx, s.Key, s.Policy.Level, from)
	if err != nil {
		return err
	}
	report.WriteDryRun(w, s.Key, s.Policy.Level, int(now.Sub(from).Hours()/24+0.5), r)
	return nil
}

// Remove deletes the override of key as actor and says so on w.
func Remove(ctx context.Context, st Store, key, actor string, w io.Writer) error {
	if err := st.RemoveOverride(ctx, key, actor); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no override for %q (see `mailtls policy list`)", key)
		}
		return err
	}
	_, err := fmt.Fprintf(w, "removed %s\n", key)
	return err
}

// Import is a Postfix policy table read whole, every line validated.
type Import struct {
	Name      string
	Overrides []store.Override
}

// ReadImport reads the table file of `policy import FILE` (args: FILE,
// "-" for stdin); any bad line rejects the whole file.
func ReadImport(args []string, stdin io.Reader) (Import, error) {
	if len(args) != 1 {
		return Import{}, inputErrorf("policy import takes one FILE (or - for stdin)")
	}
	name, r := args[0], stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return Import{}, inputErrorf("%v", err)
		}
		defer f.Close()
		r = f
	}
	entries, err := policyd.ReadTable(r)
	if err != nil {
		return Import{}, inputErrorf("%s: %v; nothing imported", name, err)
	}
	imp := Import{Name: name, Overrides: make([]store.Override, 0, len(entries))}
	note := "imported from " + name // one string for all: a table can hold millions
	for _, en := range entries {
		imp.Overrides = append(imp.Overrides, store.Override{Key: en.Key, Policy: en.Value, Note: note})
	}
	return imp, nil
}

// Write stores the table's overrides as actor in one change and says how
// many changed on w.
func (imp Import) Write(ctx context.Context, st Store, actor string, w io.Writer) error {
	n, err := st.ImportOverrides(ctx, imp.Overrides, actor)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "imported %d overrides from %s (%d changed)\n", len(imp.Overrides), imp.Name, n)
	return err
}

// Export writes the overrides in force at now as a Postfix table source
// file.
func Export(ctx context.Context, st Store, now time.Time, w io.Writer) error {
	ovs, err := st.Overrides(ctx)
	if err != nil {
		return err
	}
	var entries []policyd.TableEntry
	for _, o := range ovs {
		if o.Expired(now) {
			continue
		}
		entries = append(entries, policyd.TableEntry{Key: o.Key, Value: o.Policy})
	}
	return policyd.WriteTable(w, entries,
		fmt.Sprintf("smtp_tls_policy_maps table exported by mailtls on %s\n%d overrides (expired ones omitted)", now.UTC().Format(time.RFC3339), len(entries)))
}
