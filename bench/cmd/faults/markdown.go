package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/mailtls/mailtls/bench/internal/harness"
)

func (s *suite) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# mailtls reliability\n\n")
	w("This file is written by `make faults` (`bench/faults.sh`, which builds and runs `bench/cmd/faults`).\n")
	w("Do not edit it by hand: rerun the suite. Each phase is bounded in time; the whole suite took %s.\n\n", time.Since(s.start).Round(time.Second))
	w("The suite runs the real binary as separate processes on 127.0.0.1 and breaks things around them.\n")
	if s.cfg.user != "" {
		w("The daemon, the follower and every CLI command run as **%s** (`setpriv --reuid --regid --clear-groups`), so that\n", s.cfg.user)
		w("`chmod 000` really makes files unreadable to them (root would bypass the permissions).\n")
	}
	for _, n := range s.notes {
		w("%s\n", n)
	}
	w("\n")
	for _, f := range harness.Machine("go") {
		w("- %s\n", f)
	}
	w("- During the suite %s.\n", s.foreign)
	w("\n")
	s.summary(&b)
	if s.daemon != nil {
		s.daemonSection(&b)
	}
	if s.abuse != nil {
		s.abuseSection(&b)
	}
	if s.follower != nil {
		s.followerSection(&b)
	}
	if s.restart != nil {
		s.restartSection(&b)
	}
	if s.fleet != nil {
		s.fleetSection(&b)
	}
	if s.netcut != nil {
		s.netcutSection(&b)
	}
	return b.String()
}

func (s *suite) summary(b *strings.Builder) {
	t := harness.Table{Head: []string{"check", "expected", "result", "verdict"}}
	s.failed = nil
	// verdict records a failed check; only correctness checks count for
	// -check (timing ones depend on how busy the machine is).
	verdict := func(ok bool, check ...string) string {
		if ok {
			return "PASS"
		}
		if len(check) > 0 {
			s.failed = append(s.failed, check[0])
		}
		return "**FAIL**"
	}
	if d := s.daemon; d != nil {
		var ok, errs, wrong int64
		for _, c := range d.cases {
			ok += c.win.ok.Load()
			errs += c.win.errs.Load()
			wrong += c.win.wrong.Load()
		}
		t.Add("daemon under database faults: errors", "0", fmt.Sprintf("%s of %s lookups", harness.Int(errs), harness.Int(ok+errs)), verdict(errs == 0, fmt.Sprintf("daemon under database faults: %d errors", errs)))
		t.Add("daemon under database faults: wrong answers", "0", harness.Int(wrong), verdict(wrong == 0, fmt.Sprintf("daemon under database faults: %d wrong answers", wrong)))
		t.Add("daemon survives and stops cleanly", "exit 0", d.exit, verdict(strings.HasPrefix(d.exit, "exited 0"), "daemon under database faults: "+d.exit))
	}
	if a := s.abuse; a != nil {
		worst := int64(0)
		var errs, wrong int64
		for _, w := range a.legit.all {
			worst = max(worst, w.lat.quantile(0.99))
			errs += w.errs.Load()
			wrong += w.wrong.Load()
		}
		t.Add("abuse: legitimate clients' p99 (worst phase)", "≤ 5 ms", fmt.Sprintf("%s µs", harness.Int(worst)), verdict(worst <= 5000))
		t.Add("abuse: legitimate clients' errors / wrong answers", "0 / 0", fmt.Sprintf("%d / %d", errs, wrong), verdict(errs == 0 && wrong == 0, fmt.Sprintf("abuse: legitimate clients got %d errors, %d wrong answers", errs, wrong)))
		t.Add("abuse: daemon survives and stops cleanly", "exit 0", a.exit, verdict(a.alive && strings.HasPrefix(a.exit, "exited 0"), "abuse: "+a.exit))
	}
	if f := s.follower; f != nil {
		for _, c := range f.cases {
			if c.gaveUp {
				t.Add(c.name+": lost / duplicated", "0 / 0", strings.Join(c.notes, "; "), "not run")
				continue
			}
			t.Add(c.name+": lost / duplicated / wrong fields", "0 / 0 / 0", fmt.Sprintf("%d / %d / %d of %s", c.lost, c.dup, c.differ, harness.Int(int64(c.expected))), verdict(c.lost == 0 && c.dup == 0 && c.differ == 0,
				fmt.Sprintf("%s: %d lost, %d duplicated, %d with wrong fields", c.name, c.lost, c.dup, c.differ)))
		}
	}
	if r := s.restart; r != nil && len(r.first) > 0 {
		t.Add(fmt.Sprintf("restart with %s overrides: start → first answer (median of %d)", harness.Int(restartOverrides), len(r.first)), "—",
			fmt.Sprintf("%.0f ms", harness.Median(r.first)), "—")
	}
	if s.fleet != nil {
		s.fleetSummary(&t, verdict)
	}
	if s.netcut != nil {
		s.netcutSummary(&t, verdict)
	}
	b.WriteString("## Summary\n\n")
	b.WriteString(t.String())
	b.WriteString("\n")
}

func winRow(t *harness.Table, lead []string, w *window) {
	t.Add(append(lead,
		fmt.Sprintf("%.1f", w.end.Sub(w.start).Seconds()),
		harness.Int(w.ok.Load()), harness.Int(w.errs.Load()), harness.Int(w.wrong.Load()),
		harness.Int(w.lat.quantile(0.5)), harness.Int(w.lat.quantile(0.99)), harness.Int(w.lat.max.Load()))...)
}

func (s *suite) daemonSection(b *strings.Builder) {
	d := s.daemon
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 1. Policy daemon under database faults\n\n")
	w("Command: `%s`, database made with `mailtls policy import` of 4 overrides (exact, `.parent` wildcard,\n", d.cmd)
	w("`[192.0.2.1]:25`, `secure match=`). %d persistent socketmap connections (bench/cmd/faults, like `mailtls-bench lookup`)\n", d.conns)
	w("send lookups back to back for the whole test and check **every** answer: override keys must get their policy\n")
	w("(`known.example`, `KNOWN.Example`, `a.b.wild.example`, `[192.0.2.1]:25`, `forced.example.net`) and the others `OK may`\n")
	w("(`wild.example`, `other.example.net`, `plain.example`). An error is a failed connection, read or a TEMP/PERM reply;\n")
	w("a wrong answer is any other reply. Latencies are from request to reply, under full load on 2 CPUs shared by\n")
	w("the daemon and the client, so compare each case with the baseline. \"Visible\" is how long after the change\n")
	w("(`policy set`/`policy import` returned) the daemon answered it (it polls every 500 ms).\n\n")
	t := harness.Table{Head: []string{"case", "fault", "s", "answered", "errors", "wrong", "p50 µs", "p99 µs", "max µs", "CLI during the fault", "change visible"}}
	for _, c := range d.cases {
		winRow(&t, []string{c.name, c.what}, c.win)
		t.Rows[len(t.Rows)-1] = append(t.Rows[len(t.Rows)-1], orDash(c.cli), orDash(c.visible))
	}
	b.WriteString(t.String())
	w("\nDaemon: %s. Its log: %s.\n", d.exit, levels(d.logCounts))
	if len(d.logSample) > 0 {
		w("Distinct warnings/errors it logged:\n\n")
		for _, l := range d.logSample {
			w("- `%s`\n", strings.ReplaceAll(l, "`", "'"))
		}
	}
	for _, c := range d.cases {
		if len(c.win.samples) > 0 {
			w("\nFirst errors or wrong answers in %s:\n\n", c.name)
			for _, sm := range c.win.samples {
				w("- `%s`\n", sm)
			}
		}
	}
	w("\n")
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return strings.ReplaceAll(s, "|", "\\|")
}

func levels(m map[string]int) string {
	if len(m) == 0 {
		return "no lines"
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%d %s", m[k], k))
	}
	return strings.Join(parts, ", ") + " lines"
}

func (s *suite) abuseSection(b *strings.Builder) {
	a := s.abuse
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 2. Abusive clients\n\n")
	w("Command: `%s`. Throughout, %d legitimate persistent connections (opened before the abuse, as Postfix keeps\n", a.cmd, legitConns)
	w("its connections) each send one lookup per %s (%s lookups/s in all) and check every answer. Target: p99 ≤ 5 ms.\n\n", legitPace, harness.Int(int64(legitConns)*int64(time.Second/legitPace)))
	t := harness.Table{Head: []string{"phase", "s", "answered", "errors", "wrong", "p50 µs", "p99 µs", "max µs"}}
	for _, win := range a.legit.all {
		winRow(&t, []string{win.name}, win)
	}
	b.WriteString(t.String())
	w("\n- Slow clients: %s.\n", a.slow)
	for _, f := range a.flood {
		w("- Flood: %s.\n", f)
	}
	w("\nOversized and garbage requests, each on a new connection, 4 senders for 10 s (reaction = what the sender saw):\n\n")
	gt := harness.Table{Head: []string{"input", "sent", "server reaction"}}
	for _, g := range a.garbage {
		var parts []string
		for r, n := range g.reaction {
			parts = append(parts, fmt.Sprintf("%s ×%d", r, n))
		}
		sort.Strings(parts)
		gt.Add(g.name, harness.Int(int64(g.sent)), strings.Join(parts, "; "))
	}
	b.WriteString(gt.String())
	w("\nDaemon: %s. Its log: %s.\n\n", a.exit, levels(a.logs))
	for _, win := range a.legit.all {
		if len(win.samples) > 0 {
			w("First errors or wrong answers in %q:\n\n", win.name)
			for _, sm := range win.samples {
				w("- `%s`\n", sm)
			}
			w("\n")
		}
	}
}

func (s *suite) followerSection(b *strings.Builder) {
	f := s.follower
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 3. Log follower\n\n")
	w("Input: %s. A writer appends its lines to `mail.log` in chunks of 1–50 lines, each chunk written in two parts\n", f.gen)
	w("split at a random byte (so the follower sees partial last lines), while `mailtls follow --db DB --log mail.log`\n")
	w("runs as a separate process. Afterwards the lines that were written, in order, are put in one file and loaded\n")
	w("into a fresh database with `mailtls import`; `mailtls deliveries --format jsonl` of both databases are compared\n")
	w("delivery by delivery (a delivery is named by its time, queue ID, recipient and status): **lost** = deliveries of\n")
	w("the clean import missing from the follower's database, **duplicated** = extra rows, **wrong fields** = deliveries\n")
	w("present in both whose other fields differ (e.g. `tls` unknown instead of `true`: the TLS session was not carried over).\n\n")
	t := harness.Table{Head: []string{"case", "fault", "lines", "rename / copytruncate / delete / gzip", "SIGKILLs", "expected rows", "recorded", "lost", "duplicated", "wrong fields", "notes"}}
	for _, c := range f.cases {
		notes := append([]string{}, c.notes...)
		if c.caughtUp != "" {
			notes = append(notes, c.caughtUp)
		}
		if c.exitedOnItsOwn > 0 {
			notes = append(notes, fmt.Sprintf("follower exited by itself %d times", c.exitedOnItsOwn))
		}
		if c.gaveUp {
			t.Add(c.name, c.what, "—", "—", "—", "—", "—", "—", "—", "—", orDash(strings.Join(notes, "; ")))
			continue
		}
		t.Add(c.name, c.what, harness.Int(int64(c.lines)), fmt.Sprintf("%d / %d / %d / %d", c.renames, c.copies, c.deletes, c.compressed), fmt.Sprint(c.kills),
			harness.Int(int64(c.expected)), harness.Int(int64(c.recorded)), harness.Int(int64(c.lost)), harness.Int(int64(c.dup)), harness.Int(int64(c.differ)), orDash(strings.Join(notes, "; ")))
	}
	b.WriteString(t.String())
	for _, c := range f.cases {
		if c.kills > 0 && c.renames > 0 && c.lost+c.dup+c.differ > 0 {
			w("\n**%s: why rows were lost.** The losses follow SIGKILLs that fell while the writer was still writing the\n", c.name)
			w("file it had just renamed (syslog writes the old file until it is told to reopen). A follower that runs through\n")
			w("such a rotation keeps reading the renamed file while it grows (compare F2: the same rotations, no kills); one that *restarts* in that moment\n")
			w("finds the renamed file by its inode, reads it to its current end, switches to the new file at once and never\n")
			w("reads what is appended to the renamed file afterwards. \"Wrong fields\" rows are knock-on effects: the lost\n")
			w("lines held the TLS or handshake-failure lines of later deliveries. Deterministic reproduction:\n")
			w("`bench/repro/follow-restart-rename.sh restart` (loses rows) vs `bench/repro/follow-restart-rename.sh live` (does not).\n")
		}
	}
	w("\nRegression check: `bench/repro/follow-restart-rename.sh` replays, deterministically, the case F3 caught in the\n")
	w("in-progress follower before commit d6ae51c: a follower restarted while syslog is still writing the log it has just\n")
	w("renamed read the renamed file to its end, switched to the new file at once and lost what was appended to the old one\n")
	w("afterwards. `... restart` must record as many deliveries as a clean import (exit 0); `... live` is the same without the restart.\n")
	for _, c := range f.cases {
		if len(c.samples) > 0 {
			w("\nSample differences in %s:\n\n", c.name)
			for _, sm := range c.samples {
				w("- `%s`\n", sm)
			}
		}
	}
	w("\n")
}

func (s *suite) restartSection(b *strings.Builder) {
	r := s.restart
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w("## 4. Restart\n\n")
	w("Command: `%s` with %s overrides in the database (made by `mailtls policy import`), started %d times.\n", r.cmd, harness.Int(restartOverrides), len(r.first)+len(r.failures))
	w("\"First answer\" is from exec to the first correct answer for the last override, polled with a new connection\n")
	w("every few milliseconds; \"stop\" is from SIGTERM to exit.\n\n")
	t := harness.Table{Head: []string{"measure", "median ms", "min–max ms"}}
	lo, hi := harness.MinMax(r.first)
	t.Add("start → first answer", fmt.Sprintf("%.0f", harness.Median(r.first)), fmt.Sprintf("%.0f–%.0f", lo, hi))
	lo, hi = harness.MinMax(r.stop)
	t.Add("SIGTERM → exit", fmt.Sprintf("%.0f", harness.Median(r.stop)), fmt.Sprintf("%.0f–%.0f", lo, hi))
	b.WriteString(t.String())
	for _, f := range r.failures {
		w("\n- failure: %s\n", f)
	}
	w("\n")
}
