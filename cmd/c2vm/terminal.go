package main

import (
	"github.com/c2vm/c2vm/internal/fileutil"

	"errors"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/c2vm/c2vm/internal/vm"
)

// terminalFlags are run's -i and -t (combinable as -it).
func terminalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "keep the workload's stdin open and connect it to c2vm's"},
		&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "give the workload a terminal (c2vm's terminal goes raw; its size follows)"},
	}
}

// setupTerminal connects the host's stdin (-i) and terminal (-t) to the VM in cfg. Without -i the
// workload's stdin is /dev/null. With -it and a terminal on stdin, that terminal goes raw (keys,
// Ctrl-C included, go to the workload's terminal); with -t its size is sent now and on each SIGWINCH.
// The returned function restores the terminal and stops watching its size; call it on every path.
func setupTerminal(c *cli.Context, cfg *vm.Config) (restore func(), err error) {
	restore = func() {}
	if c.Bool("interactive") {
		cfg.Stdin = c.App.Reader
	}
	if !c.Bool("tty") {
		return restore, nil
	}
	f, ok := c.App.Reader.(*os.File)
	if !ok || !isTerminal(f) {
		if c.Bool("interactive") {
			return restore, errors.New("run: -it: the input device is not a terminal (drop -t to pipe input into the workload)")
		}
		return restore, nil // -t alone: the workload still gets a terminal, with no input
	}
	if !c.Bool("interactive") {
		// -t alone: no keystroke reaches the guest, so the terminal stays cooked and Ctrl-C still
		// stops the run (as docker does); the workload still gets a terminal of this size.
		return watchSize(f, cfg), nil
	}
	var state *term.State
	if err := fileutil.Control(f, func(fd int) (err error) { state, err = term.MakeRaw(fd); return err }); err != nil {
		return restore, errors.New("run: -t: cannot put the terminal in raw mode: " + err.Error())
	}
	stop := watchSize(f, cfg)
	var once sync.Once
	return func() {
		once.Do(func() {
			stop()
			fileutil.Control(f, func(fd int) error { return term.Restore(fd, state) })
		})
	}, nil
}

// watchSize sends f's window size to the guest now and after each SIGWINCH, until stop is called.
func watchSize(f *os.File, cfg *vm.Config) (stop func()) {
	sizes := make(chan vm.WindowSize, 1)
	cfg.Resize = sizes
	send := func() {
		ws, ok := windowSize(f)
		if !ok {
			return
		}
		select { // keep only the latest size
		case <-sizes:
		default:
		}
		sizes <- ws
	}
	send()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-winch:
				send()
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(winch); close(done) }
}

func windowSize(f *os.File) (vm.WindowSize, bool) {
	var w, h int
	err := fileutil.Control(f, func(fd int) (err error) { w, h, err = term.GetSize(fd); return err })
	if err != nil || w <= 0 || h <= 0 || w > 0xffff || h > 0xffff {
		return vm.WindowSize{}, false
	}
	return vm.WindowSize{Rows: uint16(h), Cols: uint16(w)}, true
}

func isTerminal(f *os.File) bool {
	return fileutil.Control(f, func(fd int) error {
		if !term.IsTerminal(fd) {
			return io.EOF
		}
		return nil
	}) == nil
}
