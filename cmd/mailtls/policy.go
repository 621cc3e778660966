package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/policyd"
	"github.com/mailtls/mailtls/store"
)

func policyCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "manage per-destination TLS policy overrides",
		Description: "Overrides replace the default answer (may) for one destination.\n" +
			"Keys: example.com (exact), .example.com (every subdomain, not example.com itself),\n" +
			"[mx.example.com]:587 (a transport next-hop, exact).",
		Subcommands: []*cli.Command{
			policySetCommand(e),
			{
				Name:      "rm",
				Usage:     "remove an override",
				ArgsUsage: "KEY",
				UsageText: "mailtls policy rm example.com",
				Action:    func(c *cli.Context) error { return policyRm(c, e) },
			},
			{
				Name:      "list",
				Usage:     "list overrides",
				UsageText: "mailtls policy list [--format table|json|csv]",
				Flags:     []cli.Flag{formatFlag("table", "table|json|csv")},
				Action:    func(c *cli.Context) error { return policyList(c, e) },
			},
			{
				Name:      "history",
				Usage:     "show the change history of overrides",
				ArgsUsage: "[KEY]",
				UsageText: "mailtls policy history [example.com]",
				Flags:     []cli.Flag{formatFlag("table", "table|json|csv")},
				Action:    func(c *cli.Context) error { return policyHistory(c, e) },
			},
			{
				Name:      "import",
				Usage:     "import a Postfix smtp_tls_policy table (hash:/texthash: source format)",
				ArgsUsage: "FILE",
				UsageText: "mailtls policy import /etc/postfix/tls_policy\n\n" +
					"Every line is validated first; any error rejects the whole file.",
				Action: func(c *cli.Context) error { return policyImport(c, e) },
			},
			{
				Name:      "export",
				Usage:     "write the overrides as a Postfix table source file",
				UsageText: "mailtls policy export > tls_policy",
				Action:    func(c *cli.Context) error { return policyExport(c, e) },
			},
		},
	}
}

func policyRm(c *cli.Context, e env) error {
	if c.NArg() != 1 {
		return usageErrorf("policy rm takes exactly one KEY (e.g. mailtls policy rm example.com)")
	}
	key, st, err := keyAndStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.RemoveOverride(c.Context, key, store.Actor(e.getenv)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no override for %q (see `mailtls policy list`)", key)
		}
		return err
	}
	fmt.Fprintf(e.stdout, "removed %s\n", key)
	return nil
}

// keyAndStore reads the one KEY argument in normal form and opens the
// store, for the commands about one key.
func keyAndStore(c *cli.Context) (string, *store.Store, error) {
	key, err := policyd.NormalizeKey(c.Args().First())
	if err != nil {
		return "", nil, usageErrorf("%v", err)
	}
	st, err := openStore(c)
	if err != nil {
		return "", nil, err
	}
	return key, st, nil
}

// overrideJSON is one override in `policy list --format json`.
type overrideJSON struct {
	Key     string  `json:"key"`
	Policy  string  `json:"policy"`
	Note    string  `json:"note"`
	Created string  `json:"created"`
	Updated string  `json:"updated"`
	Expires *string `json:"expires"`
	Expired bool    `json:"expired"`
}

func policyList(c *cli.Context, e env) error {
	format := c.String("format")
	if err := checkFormat(format, "table", "json", "csv"); err != nil {
		return err
	}
	ovs, err := storedOverrides(c)
	if err != nil {
		return err
	}
	now := time.Now()
	if format == "json" {
		out := make([]overrideJSON, 0, len(ovs))
		for _, o := range ovs {
			j := overrideJSON{Key: o.Key, Policy: o.Policy, Note: o.Note, Created: o.Created.UTC().Format(time.RFC3339), Updated: o.Updated.UTC().Format(time.RFC3339)}
			if !o.Expires.IsZero() {
				s := o.Expires.UTC().Format(time.RFC3339)
				j.Expires, j.Expired = &s, !o.Expires.After(now)
			}
			out = append(out, j)
		}
		return writeJSON(e.stdout, out)
	}
	if len(ovs) == 0 && format == "table" {
		fmt.Fprintln(e.stdout, "No overrides set: every destination gets the default answer (see `mailtls policy set --help`).")
		return nil
	}
	t := newTable("KEY", "POLICY", "EXPIRES", "UPDATED", "NOTE")
	for _, o := range ovs {
		exp := "-"
		if !o.Expires.IsZero() {
			exp = fmtTime(o.Expires)
			if !o.Expires.After(now) {
				exp += " (expired)"
			}
		}
		t.add(o.Key, o.Policy, exp, fmtTime(o.Updated), o.Note)
	}
	return t.write(e.stdout, format)
}

// changeJSON is one change in `policy history --format json`.
type changeJSON struct {
	At    string  `json:"at"`
	Key   string  `json:"key"`
	Old   *string `json:"old"`
	New   *string `json:"new"`
	Actor string  `json:"actor"`
	Note  string  `json:"note"`
}

func policyHistory(c *cli.Context, e env) error {
	format := c.String("format")
	if err := checkFormat(format, "table", "json", "csv"); err != nil {
		return err
	}
	key := ""
	if c.NArg() > 1 {
		return usageErrorf("policy history takes at most one KEY")
	}
	if c.NArg() == 1 {
		k, err := policyd.NormalizeKey(c.Args().First())
		if err != nil {
			return usageErrorf("%v", err)
		}
		key = k
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	hist, err := st.History(c.Context, key)
	if err != nil {
		return err
	}
	if format == "json" {
		out := make([]changeJSON, 0, len(hist))
		for _, h := range hist {
			j := changeJSON{At: h.At.UTC().Format(time.RFC3339), Key: h.Key, Actor: h.Actor, Note: h.Note}
			if h.Old != "" {
				j.Old = &h.Old
			}
			if h.New != "" {
				j.New = &h.New
			}
			out = append(out, j)
		}
		return writeJSON(e.stdout, out)
	}
	if len(hist) == 0 && format == "table" {
		fmt.Fprintln(e.stdout, "No changes recorded.")
		return nil
	}
	t := newTable("WHEN", "KEY", "OLD", "NEW", "BY")
	for _, h := range hist {
		t.add(fmtTime(h.At), h.Key, dash(h.Old), dash(h.New), h.Actor)
	}
	return t.write(e.stdout, format)
}

func policyImport(c *cli.Context, e env) error {
	if c.NArg() != 1 {
		return usageErrorf("policy import takes one FILE (or - for stdin)")
	}
	var r io.Reader = e.stdin
	name := c.Args().First()
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return usageErrorf("%v", err)
		}
		defer f.Close()
		r = f
	}
	entries, err := policyd.ReadTable(r)
	if err != nil {
		return usageErrorf("%s: %v; nothing imported", name, err)
	}
	ovs := make([]store.Override, 0, len(entries))
	for _, en := range entries {
		ovs = append(ovs, store.Override{Key: en.Key, Policy: en.Value, Note: "imported from " + name})
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := st.ImportOverrides(c.Context, ovs, store.Actor(e.getenv))
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "imported %d overrides from %s (%d changed)\n", len(ovs), name, n)
	return nil
}

func policyExport(c *cli.Context, e env) error {
	ovs, err := storedOverrides(c)
	if err != nil {
		return err
	}
	now := time.Now()
	var entries []policyd.TableEntry
	for _, o := range ovs {
		if !o.Expires.IsZero() && !o.Expires.After(now) {
			continue
		}
		entries = append(entries, policyd.TableEntry{Key: o.Key, Value: o.Policy})
	}
	return policyd.WriteTable(e.stdout, entries,
		fmt.Sprintf("smtp_tls_policy_maps table exported by mailtls on %s\n%d overrides (expired ones omitted)", now.UTC().Format(time.RFC3339), len(entries)))
}

func policySetCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "set",
		Usage:     "create or change an override",
		ArgsUsage: "KEY LEVEL [ATTR=VALUE ...]",
		UsageText: "mailtls policy set KEY LEVEL [ATTR=VALUE ...] [--note TEXT] [--expires 30d] [--dry-run]\n\n" +
			"mailtls policy set example.com encrypt\n" +
			"mailtls policy set .corp.example verify match=hostname:nexthop --note 'ticket 42'\n" +
			"mailtls policy set '[mx.example.net]:587' encrypt protocols=>=TLSv1.2 --expires 30d\n" +
			"mailtls policy set example.com encrypt --dry-run   # what would history say?\n\n" +
			"LEVEL is one of none may encrypt dane dane-only fingerprint verify secure.\n" +
			"Attributes: protocols ciphers exclude match servername tafile connection_reuse enable_rpk.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "note", Usage: "free-text `NOTE` stored with the override"},
			&cli.StringFlag{Name: "expires", Usage: "expire the override after `DURATION` (e.g. 30d, 12h)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "show what the delivery history says would have happened, change nothing"},
			&cli.StringFlag{Name: "since", Value: "30d", Usage: "history window for --dry-run: a `DURATION` back from now, or a date"},
		},
		Action: func(c *cli.Context) error { return policySet(c, e) },
	}
}

func policySet(c *cli.Context, e env) error {
	if c.NArg() < 2 {
		return usageErrorf("policy set needs KEY and LEVEL (e.g. mailtls policy set example.com encrypt)")
	}
	key, p, err := policyd.ParseOverride(c.Args().Slice())
	if err != nil {
		return usageErrorf("%v", err)
	}
	if strings.ContainsAny(c.String("note"), "\r\n") {
		return usageErrorf("--note must be a single line")
	}
	var expires time.Time
	if s := c.String("expires"); s != "" {
		d, err := parseDuration(s)
		if err != nil || d <= 0 {
			return usageErrorf("--expires: invalid duration %q (want e.g. 12h, 30d, 2w)", s)
		}
		expires = time.Now().Add(d)
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	if c.Bool("dry-run") {
		return policyDryRun(c, e, st, key, p)
	}
	o := store.Override{Key: key, Policy: p.String(), Note: c.String("note"), Expires: expires}
	if err := st.SetOverride(c.Context, o, store.Actor(e.getenv)); err != nil {
		return err
	}
	msg := fmt.Sprintf("%s -> %s", key, p.String())
	if !expires.IsZero() {
		msg += fmt.Sprintf(" (expires %s)", fmtTime(expires))
	}
	fmt.Fprintln(e.stdout, msg)
	return nil
}

// storedOverrides reads every override from the database.
func storedOverrides(c *cli.Context) ([]store.Override, error) {
	st, err := openStore(c)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return st.Overrides(c.Context)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func formatFlag(def, accepted string) cli.Flag {
	return &cli.StringFlag{Name: "format", Value: def, Usage: "output `FORMAT`: " + accepted}
}
