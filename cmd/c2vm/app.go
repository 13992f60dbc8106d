package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/c2vm/c2vm/bootcfg"
)

// Exit statuses of c2vm's own failures, as docker uses them.
const (
	ExitFailure     = bootcfg.StatusInitFailed // c2vm itself failed
	ExitCannotRun   = bootcfg.StatusCannotRun  // the command cannot be run
	ExitNotFound    = bootcfg.StatusNotFound   // the command was not found
	exitInterrupted = 130
)

// exitError carries an exit status out of a command without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// NewApp returns the c2vm command-line application writing to the given streams.
func NewApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	// -h is --hostname for run, as in docker; help stays --help.
	cli.HelpFlag = &cli.BoolFlag{Name: "help", Usage: "show help", DisableDefaultText: true}
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version", DisableDefaultText: true}
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintf(c.App.Writer, "c2vm %s\n", c.App.Version) }
	cmds := []*cli.Command{convertCommand(), runCommand(), inspectCommand(), exportCommand(), pushCommand(), pullCommand(), kernelCommand(), cacheCommand(), snapshotCommand(),
		psCommand(), logsCommand(), execCommand(), stopCommand(), killCommand(), rmCommand(), waitCommand(), superviseCommand()}
	for _, c := range cmds {
		c.OnUsageError = usageLine
		tidyFlags(c.Flags)
	}
	return &cli.App{
		Name:            "c2vm",
		Usage:           "turn container images into bootable VM bundles and run them",
		Version:         version(),
		Reader:          stdin,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		// A repeated flag is a list; a comma is part of the value (-e A=1,2, --change 'CMD ["a", "b"]').
		DisableSliceFlagSeparator: true,
		OnUsageError:              usageLine,
		ExitErrHandler:            func(*cli.Context, error) {}, // Main reports errors
		Commands:                  cmds,
	}
}

// usageLine turns a command-line parse error into one line (no usage dump).
func usageLine(c *cli.Context, err error, _ bool) error {
	if cmd := c.Command; cmd != nil && cmd.Name != "" && cmd.Name != c.App.Name {
		return fmt.Errorf("%s: %v (see c2vm %s --help)", cmd.Name, err, cmd.Name)
	}
	return fmt.Errorf("%v (see c2vm --help)", err)
}

// tidyFlags keeps help to one default per flag: booleans show none, and the others show their
// Value (or DefaultText) once, as urfave/cli prints it.
func tidyFlags(flags []cli.Flag) {
	for _, f := range flags {
		if b, ok := f.(*cli.BoolFlag); ok {
			b.DisableDefaultText = true
		}
	}
}

// version is the module version c2vm was built at ("devel" from a checkout).
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// Main runs the CLI and returns the process exit status. Errors become one line on stderr.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := NewApp(stdin, stdout, stderr).RunContext(context.Background(), args)
	return exitStatus(err, stderr)
}

func exitStatus(err error, stderr io.Writer) int {
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "c2vm: interrupted")
		return exitInterrupted
	}
	fmt.Fprintln(stderr, "c2vm: "+oneLine(err.Error()))
	return ExitFailure
}

// oneLine folds a multi-line error (errors.Join) into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// usageError reports a command-line mistake.
func usageError(format string, a ...any) error {
	return fmt.Errorf(format, a...)
}
