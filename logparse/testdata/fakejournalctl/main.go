// Command fakejournalctl stands in for journalctl(1) in tests of
// logparse.JournalFollower and of "mailtls follow --journal".
//
// It prints the entries of a captured "journalctl -o json" fixture, one JSON
// object per line, honouring the options the follower passes:
//
//	--follow, -f          after the last entry, wait until killed (unless
//	                      FAKEJOURNALCTL_EXIT_AT_END=1)
//	--after-cursor=C      print only the entries after the one whose
//	                      __CURSOR is C; an unknown C fails like journalctl
//	--output=json, -o json, --no-tail, --no-pager, --unit=U, --lines=N,
//	--directory=DIR: accepted and ignored
//
// The environment controls the fixture and the failures to simulate:
//
//	FAKEJOURNALCTL_FIXTURE    path of the fixture (required)
//	FAKEJOURNALCTL_ARGLOG     if set, one line per run is appended to this
//	                          file: the arguments joined by tabs
//	FAKEJOURNALCTL_DIE_AFTER  N: print N entries, then half of the next one
//	                          without its newline, and exit 1, as if killed
//	                          while writing (only when an entry follows)
//	FAKEJOURNALCTL_EXIT_AT_END=1  exit 0 after the last entry even with --follow
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	follow := false
	after := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--follow" || a == "-f":
			follow = true
		case strings.HasPrefix(a, "--after-cursor="):
			after = strings.TrimPrefix(a, "--after-cursor=")
		case a == "--output=json" || a == "--no-tail" || a == "--no-pager" ||
			strings.HasPrefix(a, "--unit=") || strings.HasPrefix(a, "--lines=") || strings.HasPrefix(a, "--directory="):
		case a == "-o" && i+1 < len(args) && args[i+1] == "json":
			i++
		default:
			fmt.Fprintf(os.Stderr, "fakejournalctl: unsupported option %q\n", a)
			return 2
		}
	}
	if p := os.Getenv("FAKEJOURNALCTL_ARGLOG"); p != "" {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fakejournalctl:", err)
			return 1
		}
		fmt.Fprintln(f, strings.Join(args, "\t"))
		f.Close()
	}
	data, err := os.ReadFile(os.Getenv("FAKEJOURNALCTL_FIXTURE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakejournalctl: FAKEJOURNALCTL_FIXTURE:", err)
		return 1
	}
	var entries [][]byte
	for _, l := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(l)) > 0 {
			entries = append(entries, l)
		}
	}
	start := 0
	if after != "" {
		start = -1
		for i, e := range entries {
			var v struct {
				Cursor string `json:"__CURSOR"`
			}
			if json.Unmarshal(e, &v) == nil && v.Cursor == after {
				start = i + 1
				break
			}
		}
		if start < 0 {
			fmt.Fprintln(os.Stderr, "Failed to seek to cursor: Invalid argument")
			return 1
		}
	}
	dieAfter := -1
	if s := os.Getenv("FAKEJOURNALCTL_DIE_AFTER"); s != "" {
		if dieAfter, err = strconv.Atoi(s); err != nil {
			fmt.Fprintln(os.Stderr, "fakejournalctl: FAKEJOURNALCTL_DIE_AFTER:", err)
			return 2
		}
	}
	w := bufio.NewWriter(os.Stdout)
	for n, e := range entries[start:] {
		if n == dieAfter {
			w.Write(e[:len(e)/2])
			w.Flush()
			return 1
		}
		w.Write(e)
		w.WriteByte('\n')
		// journalctl flushes each entry in follow mode.
		if err := w.Flush(); err != nil {
			return 1
		}
	}
	if !follow || os.Getenv("FAKEJOURNALCTL_EXIT_AT_END") == "1" {
		return 0
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGPIPE)
	<-sig
	return 0
}
