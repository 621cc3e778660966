// Command mailtls is a companion for Postfix: it answers smtp_tls_policy_maps
// lookups (socketmap and tcp_table), records the TLS outcome of every outbound
// delivery from the mail log, and reports TLS coverage.
//
// This package is flags and wiring only; the logic lives in policyd, logparse
// and store.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/mailtls/mailtls/internal/cliargs"
	"github.com/mailtls/mailtls/overrides"
	"github.com/mailtls/mailtls/report"
	"github.com/mailtls/mailtls/store"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and failed
	exitUsage   = 2 // bad flags, arguments or input
)

// usageError marks errors caused by bad input; they exit with exitUsage.
type usageError = cliargs.UsageError

var usageErrorf = cliargs.Usagef

// env is what a command sees of the outside world, so tests can drive the
// whole CLI in-process.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args, env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// Run runs the CLI and returns the process exit code. Errors are printed as a
// single line on stderr.
func Run(ctx context.Context, args []string, e env) int {
	app := newApp(e)
	args = cliargs.Reorder(app, args)
	err := app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	// Package prefixes of sentinel errors help in logs, not on a terminal.
	for _, p := range []string{"policyd: ", "store: ", "logparse: ", "discover: ", "httpd: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	fmt.Fprintf(e.stderr, "mailtls: %s\n", msg)
	var ue *usageError
	if errors.As(err, &ue) || errors.Is(err, store.ErrBadInput) || errors.Is(err, report.ErrBadInput) || errors.Is(err, overrides.ErrBadInput) {
		return exitUsage
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return exitFailure
}

func newApp(e env) *cli.App {
	app := &cli.App{
		Name:  "mailtls",
		Usage: "TLS policy daemon, delivery recorder and coverage reports for Postfix",
		Description: "mailtls answers Postfix's smtp_tls_policy_maps lookups (socketmap and tcp_table),\n" +
			"follows the mail log to record how every outbound delivery really went out, and\n" +
			"reports TLS coverage. Start with `mailtls run`, then `mailtls postfix-config`.",
		Reader:          e.stdin,
		Writer:          e.stdout,
		ErrWriter:       e.stderr,
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {},
		OnUsageError:    onUsageError,
		CommandNotFound: func(c *cli.Context, cmd string) {},
		Commands:        commands(e),
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usageErrorf("unknown command %q (run `mailtls --help` for the list)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
	}
	cliargs.Walk(app.Commands, func(c *cli.Command) {
		// Every command has its own --db, so that it is accepted after
		// the command name as the contract says ("--db PATH on every
		// command").
		c.Flags = append(c.Flags, dbFlag(e))
		c.OnUsageError = onUsageError
		if len(c.Subcommands) > 0 && c.Action == nil {
			c.Action = subcommandHelp(c.Name)
		}
	})
	return app
}

func onUsageError(_ *cli.Context, err error, _ bool) error {
	return &usageError{Msg: err.Error() + " (see --help)"}
}

// subcommandHelp is the action of a command that has only subcommands.
func subcommandHelp(name string) cli.ActionFunc {
	return func(cc *cli.Context) error {
		if cc.Args().Present() {
			return usageErrorf("unknown %s command %q (run `mailtls %s --help`)", name, cc.Args().First(), name)
		}
		return cli.ShowSubcommandHelp(cc)
	}
}

func dbFlag(e env) cli.Flag {
	def := "/var/lib/mailtls/mailtls.db"
	if v := e.getenv("MAILTLS_DB"); v != "" {
		def = v
	}
	return &cli.StringFlag{
		Name:        "db",
		Usage:       "SQLite database `PATH` (created on first use), or a PostgreSQL DSN postgres://USER@HOST/DB?sslmode=verify-full (env MAILTLS_DB)",
		Value:       def,
		DefaultText: store.RedactDSN(def),
	}
}

func commands(e env) []*cli.Command {
	return []*cli.Command{
		runCommand(e),
		serveCommand(e),
		policyCommand(e),
		lookupCommand(e),
		importCommand(e),
		migrateCommand(e),
		followCommand(e),
		deliveriesCommand(e),
		reportCommand(e),
		suggestCommand(e),
		pruneCommand(e),
		statusCommand(e),
		postfixConfigCommand(e),
		checkCommand(e),
		tlsrptCommand(e),
	}
}
