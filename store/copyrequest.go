package store

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// MigrateRequest is `mailtls migrate` as given: the SQLite file From, the
// database To, and the flags that become CopyOptions (Host unchecked).
type MigrateRequest struct {
	From, To, Prefer, Host string
	Progress               func(stage string, done, total int64)
}

// flagError is an ErrBadInput whose message is only what was wrong with
// which flag, as the command prints it.
type flagError struct{ msg string }

func (e *flagError) Error() string        { return e.msg }
func (e *flagError) Is(target error) bool { return target == ErrBadInput }

func flagErrorf(format string, args ...any) error {
	return &flagError{msg: fmt.Sprintf(format, args...)}
}

// Migrate is `mailtls migrate`: it checks the request, opens both
// databases and copies From into To (Copy). target is To as it may be
// shown (Path).
func Migrate(ctx context.Context, q MigrateRequest) (res CopyResult, target string, err error) {
	opt, err := q.options()
	if err != nil {
		return res, "", err
	}
	src, err := Open(ctx, q.From)
	if err != nil {
		return res, "", fmt.Errorf("open --from %s: %w", q.From, err)
	}
	defer src.Close()
	dst, err := Open(ctx, q.To)
	if errors.Is(err, ErrBadInput) {
		return res, "", flagErrorf("--to: %s", BadInputText(err))
	}
	if err != nil {
		return res, "", fmt.Errorf("open --to %s: %w", RedactDSN(q.To), err)
	}
	defer dst.Close()
	res, err = Copy(ctx, src, dst, opt)
	if errors.Is(err, ErrConflict) {
		return res, "", flagErrorf("%s", err.Error())
	}
	return res, dst.Path(), err
}

// options checks the request's flags and turns them into Copy's options.
func (q MigrateRequest) options() (CopyOptions, error) {
	opt := CopyOptions{Prefer: q.Prefer, Progress: q.Progress}
	if q.From == "" || q.To == "" {
		return opt, flagErrorf("migrate needs --from PATH.db and --to postgres://... (both)")
	}
	if fi, err := os.Stat(q.From); err != nil || !fi.Mode().IsRegular() {
		return opt, flagErrorf("--from %q: not an existing SQLite database file", q.From)
	}
	if RedactDSN(q.From) == RedactDSN(q.To) {
		return opt, flagErrorf("--from and --to are the same database")
	}
	switch opt.Prefer {
	case "", PreferSource, PreferTarget:
	default:
		return opt, flagErrorf("--prefer %q; accepted: source, target", opt.Prefer)
	}
	if q.Host != "" {
		h, err := CheckHost(q.Host)
		if err != nil {
			return opt, flagErrorf("--host: %s", BadInputText(err))
		}
		opt.Host = h
	}
	return opt, nil
}
