package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/logparse"
	"github.com/mailtls/mailtls/report"
	"github.com/mailtls/mailtls/store"
)

// followerStatus is how far a follower got, from its stored checkpoint.
type followerStatus struct {
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

// hostStatus is one fleet host: what it stored, and whether its followers
// keep up.
type hostStatus struct {
	Name       string `json:"name"`
	Deliveries int64  `json:"deliveries"`  // counted in reports
	LastCommit string `json:"last_commit"` // of its followers, RFC 3339; "" if none
	Lag        int64  `json:"lag_seconds"` // since LastCommit; -1 if none
	Stale      bool   `json:"stale"`       // one of its followers is stale

	commit time.Time // LastCommit, for the table
}

type statusJSON struct {
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
	Hosts            []hostStatus     `json:"hosts"`
	Followers        []followerStatus `json:"followers"`
	// Warnings: plaintext sent to destinations forced to a mandatory
	// level, in the --since window (as in report overrides).
	Warnings []report.Warning `json:"warnings"`
	// PolicyWarnings: published enforce and DANE policies that recorded
	// deliveries since --since would have failed (as in report policies).
	// They do not change the exit code.
	PolicyWarnings []string `json:"policy_warnings"`
}

func statusCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "what the database holds, and whether the log follower keeps up (for monitoring)",
		UsageText: "mailtls status\n" +
			"mailtls status --format json\n" +
			"mailtls status --stale 10m    # exit 1 if the follower has stopped recording\n" +
			"mailtls status --host mx2     # one fleet host only\n\n" +
			"It lists every fleet host in the database (deliveries, last commit, lag since\n" +
			"it, stale or not) and every follower.\n" +
			"A follower is stale when its log file has lines it has not recorded and it has\n" +
			"recorded nothing for --stale: it is stopped or stuck. Exit 1 then, and also when\n" +
			"a destination forced to encrypt, dane-only, fingerprint, verify or secure got\n" +
			"plaintext since --since (Postfix is not asking mailtls for it); 0 otherwise.\n" +
			"It also prints the published MTA-STS enforce and DANE policies that deliveries\n" +
			"since --since would have failed (see `mailtls report policies`); those warnings\n" +
			"do not change the exit code.",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "stale", Value: 5 * time.Minute, Usage: "a follower with unrecorded lines and no commit for `DURATION` is stale (exit 1)"},
			&cli.StringFlag{Name: "since", Value: "24h", Usage: "look for plaintext sent to forced destinations since `TIME` (a duration back from now, a date or RFC 3339)"},
			&cli.StringFlag{Name: "host", Usage: "only the followers of fleet host `NAME` (default: every host)"},
			formatFlag("table", "table|json"),
		},
		Action: func(c *cli.Context) error {
			format := c.String("format")
			if err := checkFormat(format, "table", "json"); err != nil {
				return err
			}
			if c.Duration("stale") <= 0 {
				return usageErrorf("--stale must be more than 0 (e.g. 5m)")
			}
			host, err := hostFilter(c)
			if err != nil {
				return err
			}
			st, err := openStore(c)
			if err != nil {
				return err
			}
			defer st.Close()
			now := time.Now()
			since, err := parseWhen(c.String("since"), now)
			if err != nil {
				return usageErrorf("--since: %v", err)
			}
			s, err := st.Status(c.Context, now)
			if err != nil {
				return err
			}
			warns, err := st.ForcedPlaintextIn(c.Context, store.Window{Since: since, Until: now})
			if err != nil {
				return err
			}
			pol, err := report.LoadPolicies(c.Context, st, store.Window{Since: since, Until: now})
			if err != nil {
				return err
			}
			fs := followers(s.Checkpoints, now, c.Duration("stale"), host)
			hs := hosts(s.Hosts, fs, now, host)
			if host != "" && len(hs) == 0 {
				return fmt.Errorf("no fleet host %q in %s (it has stored nothing)", host, s.Path)
			}
			if format == "json" {
				err = writeJSON(e.stdout, statusJSON{
					DB: s.Path, DBBytes: s.Bytes, Overrides: s.Overrides, OverridesExpired: s.Expired,
					LastOverrideEdit: rfc(s.LastEdit), LastOverrideBy: s.LastActor,
					Counted: s.Counted, Stored: s.Stored, First: rfc(s.First), Last: rfc(s.Last),
					PrunedBefore: rfc(s.PrunedBefore), Hosts: hs, Followers: fs, Warnings: report.NewWarnings(warns),
					PolicyWarnings: pol.Warnings,
				})
			} else {
				err = writeStatus(e, s, hs, fs)
				for _, w := range warns {
					fmt.Fprintf(e.stdout, "Warning     %s\n", escapeControl(report.WarningMessage(w)))
				}
				for _, w := range pol.Warnings {
					fmt.Fprintf(e.stdout, "Warning     %s\n", escapeControl(w))
				}
			}
			if err != nil {
				return err
			}
			for _, f := range fs {
				if f.Stale {
					return fmt.Errorf("follower %s of host %s is stale: %s behind, nothing recorded since %s (more than --stale %s)",
						escapeControl(f.Source), f.Host, humanBytes(f.Behind), rfc(f.Updated), c.Duration("stale"))
				}
			}
			if len(warns) > 0 {
				return fmt.Errorf("%s got plaintext while forced to a mandatory TLS level since %s: Postfix is not asking mailtls for it",
					plural(len(warns), "destination"), rfc(since))
			}
			return nil
		},
	}
}

// followers compares each file checkpoint (of host, or of every host when
// host is "") with the file it names now.
func followers(cps []store.CheckpointInfo, now time.Time, stale time.Duration, host string) []followerStatus {
	out := []followerStatus{}
	for _, c := range cps {
		if host != "" && c.Host != host {
			continue
		}
		f := followerStatus{Host: c.Host, Source: c.Source, Updated: c.Updated, Behind: -1, Lag: lagSeconds(now, c.Updated)}
		cp, err := logparse.UnmarshalCheckpoint(c.Data)
		if err != nil {
			f.Note = "checkpoint unreadable: " + err.Error()
			out = append(out, f)
			continue
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
		out = append(out, f)
	}
	return out
}

func lagSeconds(now, t time.Time) int64 {
	return max(0, int64(now.Sub(t)/time.Second))
}

// hosts is the per-host part of status: hs (of host, or all when host
// is ""), stale when one of its followers in fs is.
func hosts(hs []store.HostInfo, fs []followerStatus, now time.Time, host string) []hostStatus {
	out := []hostStatus{}
	for _, h := range hs {
		if host != "" && h.Name != host {
			continue
		}
		j := hostStatus{Name: h.Name, Deliveries: h.Counted, LastCommit: rfc(h.LastCommit), Lag: -1, commit: h.LastCommit}
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

func writeStatus(e env, s store.Status, hs []hostStatus, fs []followerStatus) error {
	w := e.stdout
	fmt.Fprintf(w, "Database    %s (%s)\n", escapeControl(s.Path), humanBytes(s.Bytes))
	ov := num(s.Overrides)
	if s.Expired > 0 {
		ov += fmt.Sprintf(" (%s expired)", num(s.Expired))
	}
	if !s.LastEdit.IsZero() {
		ov += fmt.Sprintf("; last change %s by %s", fmtTime(s.LastEdit), escapeControl(s.LastActor))
	}
	fmt.Fprintf(w, "Overrides   %s\n", ov)
	if s.Counted == 0 {
		fmt.Fprintln(w, "Deliveries  none recorded yet")
	} else {
		line := fmt.Sprintf("%s stored", num(s.Stored))
		if !s.First.IsZero() {
			line += fmt.Sprintf(", %s to %s", fmtTime(s.First), fmtTime(s.Last))
		}
		if s.Counted != s.Stored {
			line += fmt.Sprintf("; %s counted in reports", num(s.Counted))
		}
		fmt.Fprintf(w, "Deliveries  %s\n", line)
	}
	if !s.PrunedBefore.IsZero() {
		fmt.Fprintf(w, "Pruned      before %s (UTC); daily totals kept\n", s.PrunedBefore.Format(time.DateOnly))
	}
	for _, h := range hs {
		line := num(h.Deliveries) + " deliveries"
		if h.Lag >= 0 {
			line += fmt.Sprintf(", last commit %s (%s ago)", fmtTime(h.commit), time.Duration(h.Lag)*time.Second)
		} else {
			line += ", no follower commit"
		}
		if h.Stale {
			line += ", STALE"
		}
		fmt.Fprintf(w, "Host        %s: %s\n", escapeControl(h.Name), line)
	}
	if len(fs) == 0 {
		fmt.Fprintln(w, "Follower    none has run on this database (mailtls run, or mailtls follow)")
	}
	for _, f := range fs {
		var state []string
		state = append(state, "last commit "+fmtTime(f.Updated))
		if f.Behind >= 0 {
			state = append(state, humanBytes(f.Behind)+" behind")
		}
		if f.Note != "" {
			state = append(state, f.Note)
		}
		if f.Stale {
			state = append(state, "STALE")
		}
		fmt.Fprintf(w, "Follower    %s %s: %s\n", escapeControl(f.Host), escapeControl(f.Source), escapeControl(strings.Join(state, ", ")))
	}
	return nil
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
