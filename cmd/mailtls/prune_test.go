package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailtls/mailtls/delivery"
	"github.com/mailtls/mailtls/internal/servetest"
	"github.com/mailtls/mailtls/store"
)

// addAt stores one sent, encrypted delivery per time in ts.
func addAt(t *testing.T, db string, ts ...time.Time) {
	t.Helper()
	st, err := store.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	yes := true
	var ds []delivery.Delivery
	for _, at := range ts {
		n := at.UnixNano()
		ds = append(ds, delivery.Delivery{Time: at, QueueID: fmt.Sprintf("Q%X", n), Recipient: "a@keep.example", Domain: "keep.example",
			Relay: "mx.keep.example[127.0.0.1]:25", Status: "sent", DSN: "2.0.0", TLS: &yes, TLSTrust: "verified", TLSProtocol: "TLSv1.3",
			Key: fmt.Sprintf("%064x", n)})
	}
	if n, err := st.AddDeliveries(context.Background(), ds); err != nil || n != len(ds) {
		t.Fatalf("stored %d of %d: %v", n, len(ds), err)
	}
}

func countLines(s string) int { return strings.Count(s, "\n") }

func TestPruneCommand(t *testing.T) {
	c := newCLI(t)
	now := time.Now().UTC()
	old := []time.Time{now.Add(-10 * 24 * time.Hour), now.Add(-9 * 24 * time.Hour), now.Add(-8 * 24 * time.Hour)}
	addAt(t, c.db, append(old, now.Add(-2*time.Hour), now.Add(-time.Hour))...)

	for _, args := range [][]string{{"prune"}, {"prune", "--older-than", "12h"}, {"prune", "--older-than", "soon"}} {
		if _, errs, code := c.run("", args...); code != exitUsage || countLines(errs) != 1 {
			t.Errorf("%v: exit %d, stderr %q; want a one-line usage error", args, code, errs)
		}
	}

	out := c.ok("prune", "--older-than", "5d", "--dry-run")
	if !strings.Contains(out, "Would delete 3 deliveries") {
		t.Fatalf("dry run: %q", out)
	}
	if n := countLines(c.ok("deliveries")); n != 5 {
		t.Fatalf("dry run deleted something: %d deliveries left", n)
	}
	out = c.ok("prune", "--older-than", "5d")
	if !strings.Contains(out, "Deleted 3 deliveries") {
		t.Fatalf("prune: %q", out)
	}
	out, errs, code := c.run("", "deliveries")
	if code != 0 || countLines(out) != 2 || !strings.Contains(errs, "were deleted") {
		t.Fatalf("deliveries after prune: exit %d, %d lines, stderr %q", code, countLines(out), errs)
	}
	// The report still counts the pruned days, from whole days.
	out, errs, code = c.run("", "report", "--since", "30d", "--format", "json")
	if code != 0 {
		t.Fatalf("report: exit %d: %s", code, errs)
	}
	var sum struct {
		Deliveries int64 `json:"deliveries"`
		Encrypted  int64 `json:"encrypted"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Deliveries != 5 || sum.Encrypted != 5 || !strings.Contains(errs, "whole days") {
		t.Fatalf("report after prune: %+v, stderr %q", sum, errs)
	}
	// Mail logged before the horizon is not stored again (these lines are
	// from 2026-11-20, more than 5 days ago).
	logPath := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(logPath, []byte(tlsLine+sentLine+plainOne), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := c.ok("import", logPath); !strings.Contains(out, "0 deliveries stored (0 already present, 2 older than") {
		t.Fatalf("import of pruned days: %q", out)
	}
	// Pruning less keeps the horizon; nothing more is deleted.
	if out := c.ok("prune", "--older-than", "7d"); !strings.Contains(out, "Deleted 0 deliveries") {
		t.Fatalf("second prune: %q", out)
	}
}

func TestFollowKeep(t *testing.T) {
	c := newCLI(t)
	now := time.Now().UTC()
	addAt(t, c.db, now.Add(-4*24*time.Hour), now.Add(-3*24*time.Hour), now.Add(-time.Hour))
	logPath := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := c.run("", "follow", "--log", logPath, "--keep", "1h"); code != exitUsage || countLines(errs) != 1 {
		t.Fatalf("--keep 1h: exit %d, stderr %q", code, errs)
	}
	stopFollow := c.background("follow", "--log", logPath, "--keep", "2d")
	st, err := store.Open(context.Background(), c.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Prune records the horizon first and then deletes: wait for both.
	eventually(t, 20*time.Second, "follow --keep 2d prunes", func() (bool, string) {
		s, err := st.Status(context.Background(), time.Now())
		return err == nil && !s.PrunedBefore.IsZero() && s.Stored == 1 && !s.First.Before(s.PrunedBefore), fmt.Sprintf("%+v %v", s, err)
	})
	stopFollow()
	var n int
	if err := st.Deliveries(context.Background(), store.Filter{}, func(delivery.Delivery) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d deliveries left after follow --keep 2d, want 1", n)
	}
	h, _ := st.Horizon(context.Background())
	if want := now.Add(-2 * 24 * time.Hour).Truncate(24 * time.Hour); !h.Equal(want) {
		t.Fatalf("horizon %v, want %v", h, want)
	}
}

// TestStatusStale: status reports the follower's unread bytes, and exits 1
// with a one-line error when it has unread lines and nothing recorded for
// --stale.
func TestStatusStale(t *testing.T) {
	c := newCLI(t)
	if out := c.ok("status"); !strings.Contains(out, "none recorded yet") || !strings.Contains(out, "none has run") {
		t.Fatalf("empty database: %q", out)
	}
	logPath := filepath.Join(t.TempDir(), "mail.log")
	if err := os.WriteFile(logPath, []byte(tlsLine+sentLine), 0o644); err != nil {
		t.Fatal(err)
	}
	stopFollow := c.background("follow", "--log", logPath, "--poll", "20ms")
	// Polled through the store: a second in-process Run while follow
	// parses its flags would race on urfave/cli's globals.
	st, err := store.Open(context.Background(), c.db)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the follower records the delivery", func() (bool, string) {
		s, err := st.Status(context.Background(), time.Now())
		return err == nil && s.Stored == 1, fmt.Sprint(s.Stored, err)
	})
	st.Close()
	stopFollow()
	// Caught up: not stale, whatever --stale says.
	if _, errs, code := c.run("", "status", "--stale", "1ns"); code != 0 {
		t.Fatalf("caught-up follower: exit %d, %q", code, errs)
	}
	// A line the stopped follower has not read.
	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(plainOne)
	f.Close()
	var sj statusJSON
	if err := json.Unmarshal([]byte(c.ok("status", "--format", "json", "--stale", "1h")), &sj); err != nil {
		t.Fatal(err)
	}
	if len(sj.Followers) != 1 || sj.Followers[0].Behind != int64(len(plainOne)) || sj.Followers[0].Stale || sj.Stored != 1 || sj.Counted != 1 {
		t.Fatalf("status: %+v", sj)
	}
	out, errs, code := c.run("", "status", "--stale", "1ns")
	if code != exitFailure || countLines(errs) != 1 || !strings.Contains(errs, "stale") || !strings.Contains(out, "STALE") {
		t.Fatalf("stale follower: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// background runs mailtls with args until the returned function is
// called, which stops it and fails the test unless it exited 0 (quoting
// the end of its log). Only one in-process Run may parse its flags at a
// time (urfave/cli's globals), so the test watches the database
// meanwhile, not the CLI.
func (c *cliT) background(args ...string) (stop func()) {
	stop, _ = c.backgroundLog(args...)
	return stop
}

// backgroundLog is background, and also returns what the process has
// logged so far.
func (c *cliT) backgroundLog(args ...string) (stop func(), logged func() string) {
	t := c.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // if the test fails before calling stop
	done := make(chan int, 1)
	var errs servetest.SyncBuffer
	go func() {
		done <- Run(ctx, append([]string{"mailtls"}, args...),
			env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &errs, getenv: c.getenv})
	}()
	return func() {
		t.Helper()
		cancel()
		if code := <-done; code != 0 {
			log := errs.String()
			t.Fatalf("%s exited %d; its log ends: %s", args[0], code, log[max(0, len(log)-2000):])
		}
	}, errs.String
}

// backgroundListening is background for run, serve or follow given
// listen addresses of port 0: it waits until the process has logged the
// start line that names the addresses it listens on and returns them by
// listener (socketmap, tcp_table, unix, http). A port chosen by the test
// and closed before the process takes it can meanwhile be taken by any
// other test on the machine.
func (c *cliT) backgroundListening(args ...string) (stop func(), addrs map[string]string) {
	t := c.t
	t.Helper()
	stop, logged := c.backgroundLog(args...)
	eventually(t, 20*time.Second, args[0]+" logs its listeners", func() (bool, string) {
		log := logged()
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, `started"`) {
				addrs = map[string]string{}
				for _, m := range listenerRE.FindAllStringSubmatch(line, -1) {
					addrs[m[1]] = m[2]
				}
				return true, ""
			}
		}
		return false, log
	})
	return stop, addrs
}

// listenerRE is one listener of a start line: socketmap=tcp:127.0.0.1:8470.
var listenerRE = regexp.MustCompile(`(\w+)=tcp:(\S+?:\d+)\b`)
