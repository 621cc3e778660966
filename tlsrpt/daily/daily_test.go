package daily

import (
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/tlsrpt"
)

func TestParseDay(t *testing.T) {
	now := time.Date(2026, 12, 1, 3, 4, 5, 0, time.UTC)
	if d, err := ParseDay("", now); err != nil || !d.Equal(time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)) {
		t.Errorf(`ParseDay("") = %v, %v; want 2026-11-30`, d, err)
	}
	if d, err := ParseDay("2026-10-02", now); err != nil || d.Format(time.DateOnly) != "2026-10-02" {
		t.Errorf("ParseDay(2026-10-02) = %v, %v", d, err)
	}
	if _, err := ParseDay("10/02/2026", now); err == nil || !strings.HasPrefix(err.Error(), `--date "10/02/2026": `) {
		t.Errorf("ParseDay(10/02/2026) error = %v", err)
	}
}

func TestCheckShow(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	if s, err := CheckShow("", "Example.COM.", now); err != nil || s.Domain != "example.com" || s.Day.Format(time.DateOnly) != "2026-11-30" {
		t.Errorf("CheckShow = %+v, %v", s, err)
	}
	if _, err := CheckShow("", "bad..example", now); err == nil || !strings.HasPrefix(err.Error(), "--domain: ") {
		t.Errorf("CheckShow(bad domain) error = %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	id := tlsrpt.Identity{Organization: "Example", Contact: "tlsrpt@example.com"}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Timeout: time.Second}, "TLS reports need tlsrpt-org and tlsrpt-contact"},
		{Config{Identity: tlsrpt.Identity{Organization: "o", Contact: "not an address"}, Timeout: time.Second}, "is not a mail address"},
		{Config{Identity: id}, "--tlsrpt-timeout 0s: want more than 0"},
		{Config{Identity: id, Timeout: time.Second, Resolver: "no:port:here"}, "--resolver: "},
	} {
		if _, err := New(c.cfg, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) error = %v, want %q", c.cfg, err, c.want)
		}
	}
	if _, err := New(Config{Identity: id, Timeout: time.Second, Resolver: "127.0.0.1:53"}, nil); err != nil {
		t.Errorf("New: %v", err)
	}
}
