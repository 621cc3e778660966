package cliargs

import (
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestReorder(t *testing.T) {
	app := &cli.App{
		Flags: []cli.Flag{&cli.StringFlag{Name: "db"}},
		Commands: []*cli.Command{{
			Name:        "policy",
			Subcommands: []*cli.Command{{Name: "set", Flags: []cli.Flag{&cli.StringFlag{Name: "note"}, &cli.BoolFlag{Name: "dry-run"}}}},
		}},
	}
	for _, tc := range []struct{ in, want string }{
		{"mailtls policy set a.example encrypt --note x --dry-run b", "mailtls policy set --note x --dry-run a.example encrypt b"},
		{"mailtls --db x.db policy set a.example", "mailtls policy set --db x.db a.example"},
		{"mailtls policy set --note=x a.example -- --dry-run", "mailtls policy set --note=x a.example -- --dry-run"},
		{"mailtls policy set a.example policy --dry-run", "mailtls policy set --dry-run a.example policy"},
		{"mailtls", "mailtls"},
	} {
		got := strings.Join(Reorder(app, strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("Reorder(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestWalk(t *testing.T) {
	cmds := []*cli.Command{{Name: "a", Subcommands: []*cli.Command{{Name: "b"}, {Name: "c"}}}, {Name: "d"}}
	var got []string
	Walk(cmds, func(c *cli.Command) { got = append(got, c.Name) })
	if strings.Join(got, " ") != "a b c d" {
		t.Fatalf("Walk visited %q", got)
	}
}

func TestFlagNamesAndIsBool(t *testing.T) {
	var names map[string]bool
	set := &cli.Command{Name: "set", Flags: []cli.Flag{&cli.StringFlag{Name: "note", Aliases: []string{"n"}}, &cli.BoolFlag{Name: "dry-run"}},
		Action: func(c *cli.Context) error { names = FlagNames(c); return nil }}
	app := &cli.App{
		Flags:    []cli.Flag{&cli.StringFlag{Name: "db"}},
		Commands: []*cli.Command{{Name: "policy", Flags: []cli.Flag{&cli.StringFlag{Name: "actor"}}, Subcommands: []*cli.Command{set}}},
	}
	if err := app.Run([]string{"mailtls", "policy", "set"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"db", "actor", "note", "n", "dry-run"} {
		if !names[n] {
			t.Errorf("FlagNames lacks %q: %v", n, names)
		}
	}
	if !IsBool(set, "dry-run") || IsBool(set, "note") || IsBool(set, "other") {
		t.Error("IsBool: want dry-run only")
	}
}
