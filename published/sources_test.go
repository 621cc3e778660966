package published

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestParseSources(t *testing.T) {
	for in, want := range map[string]Sources{
		AllSources:          {true, true, true},
		"override":          {Override: true},
		" DANE , mta-sts":   {DANE: true, MTASTS: true},
		"mta-sts,override,": {},
	} {
		got, err := ParseSources(in)
		if in == "mta-sts,override," {
			if err == nil || !strings.Contains(err.Error(), `unknown source ""`) {
				t.Errorf("ParseSources(%q) = %+v, %v; want an unknown source", in, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("ParseSources(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	if (Sources{Override: true}).Published() || !(Sources{MTASTS: true}).Published() {
		t.Error("Published: only DANE and MTA-STS are published sources")
	}
}

func TestOpenOptions(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if r, err := Open(Options{Sources: Sources{Override: true}, Logger: quiet}); r != nil || err != nil {
		t.Errorf("Open without published sources = %v, %v; want nil, nil", r, err)
	}
	for _, b := range []time.Duration{0, MaxBudget + time.Millisecond} {
		_, err := Open(Options{Sources: Sources{DANE: true}, Resolver: "127.0.0.1:53", Budget: b, Logger: quiet})
		var oe *OptionError
		if !errors.As(err, &oe) || !strings.HasPrefix(oe.Msg, "--resolve-timeout ") {
			t.Errorf("Open with budget %s: %v; want an OptionError", b, err)
		}
	}
	_, err := Open(Options{Sources: Sources{MTASTS: true}, Resolver: "[bad", Budget: time.Second, Logger: quiet})
	var oe *OptionError
	if !errors.As(err, &oe) || !strings.HasPrefix(oe.Msg, "--resolver: ") {
		t.Errorf("Open with a bad resolver: %v; want an OptionError", err)
	}
	r, err := Open(Options{Sources: Sources{DANE: true}, Resolver: "127.0.0.1:53", Budget: time.Second, Logger: quiet})
	if err != nil || r == nil {
		t.Fatalf("Open: %v, %v", r, err)
	}
	r.Close()
}
