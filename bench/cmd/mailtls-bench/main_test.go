package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/mailtls/mailtls/logparse"
)

// TestBadInput: every refusal is one line that names what was wrong.
func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage"},
		{[]string{"nope"}, `unknown command "nope"`},
		{[]string{"lookup", "--conns", "0"}, "invalid --conns 0"},
		{[]string{"lookup", "--format", "xml"}, `invalid --format "xml"`},
		{[]string{"lookup", "--duration", "11m"}, "invalid --duration 11m0s"},
		{[]string{"echo", "--addr", "192.0.2.1:1"}, "not a loopback address"},
		{[]string{"echo", "--addr", "nocolon"}, `invalid --addr "nocolon"`},
		{[]string{"gen-log", "--lines", "0"}, "must be at least 1"},
		{[]string{"gen-log", "extra"}, `unexpected argument "extra"`},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), tc.args, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("run(%q) = %v, want one line containing %q", tc.args, err, tc.want)
		}
	}
}

// TestGenLogParses: the generated log is Postfix log text that the
// parser reads back into the deliveries the generator says it wrote.
func TestGenLogParses(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"gen-log", "--lines", "2000", "--days", "1", "--seed", "3"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	var n int
	c := logparse.NewCorrelator(logparse.Options{})
	for line := range strings.SplitSeq(out.String(), "\n") {
		if line != "" {
			n += len(c.Feed([]byte(line)))
		}
	}
	if n == 0 || !strings.Contains(errb.String(), " deliveries") {
		t.Fatalf("parsed %d deliveries from the generated log; generator said %q", n, errb.String())
	}
	if want := strings.Fields(errb.String())[2]; want != strconv.Itoa(n) {
		t.Errorf("parsed %d deliveries, the generator wrote %s", n, want)
	}
}
