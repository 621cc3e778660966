package report

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCheckReport(t *testing.T) {
	hostErr := errors.New("--host: bad")
	for _, c := range []struct {
		f    Flags
		set  string // the flag given explicitly
		want string // "" for none
	}{
		{Flags{Sort: "sent"}, "", ""},
		{Flags{Since: "bogus", Sort: "sent", HostErr: hostErr}, "", "--since: "},
		{Flags{Sort: "sent", HostErr: hostErr}, "", "--host: bad"},
		{Flags{Format: "html", By: "domain", Sort: "sent"}, "by", "--format html is the whole report"},
		{Flags{Format: "html", Host: "mx1", Sort: "sent"}, "", "--format html covers the whole fleet"},
		{Flags{Top: -1, By: "nope", Sort: "sent"}, "", "--top must be 0 or more"},
		{Flags{By: "nope", Sort: "sent"}, "", `invalid --by "nope"`},
		{Flags{Sort: "nope"}, "", `invalid --sort "nope"`},
		{Flags{Sort: "plaintext"}, "sort", "--sort orders the rows of --by"},
		{Flags{By: "hour", Sort: "plaintext"}, "sort", "--sort does not apply to --by hour"},
	} {
		c.f.Now = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		c.f.IsSet = func(name string) bool { return name == c.set }
		_, err := CheckReport(c.f)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("CheckReport(%+v): %v", c.f, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("CheckReport(%+v) error = %v, want %q", c.f, err, c.want)
		case c.want != "" && err != hostErr && !errors.Is(err, ErrBadInput):
			t.Errorf("CheckReport(%+v) error %v is not ErrBadInput", c.f, err)
		}
	}
}

func TestCheckDeliveriesWindow(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	if _, err := CheckDeliveries(Flags{Domain: "x..y", HostErr: errors.New("host"), Now: now}); err == nil || !strings.Contains(err.Error(), "--domain") {
		t.Errorf("CheckDeliveries: error %v, want the --domain one first", err)
	}
	if _, err := CheckPolicies(Flags{Domain: "example.com", Now: now}); err == nil || !errors.Is(err, ErrBadInput) {
		t.Errorf("CheckPolicies with --domain: error %v", err)
	}
	if _, err := CheckSuggest(Flags{MinDeliveries: 1}); err == nil || !errors.Is(err, ErrBadInput) {
		t.Errorf("CheckSuggest with --min-days 0: error %v", err)
	}
}
