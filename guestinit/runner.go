package guestinit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
)

// FailureStatus is the status reported when the init itself fails.
const FailureStatus = bootcfg.StatusInitFailed

// Step is one named, idempotent piece of the boot. A failing optional step is logged and skipped;
// a failing required step ends the boot with FailureStatus.
type Step struct {
	Name     string
	Optional bool
	Run      func(ctx context.Context, st *State) error
}

// Options tunes Boot. The zero value boots a real guest.
type Options struct {
	// Steps replaces the default step table (Steps()).
	Steps []Step
	// ConfigPath is the boot config path (default bootcfg.Path).
	ConfigPath string
	// Stop delivers stop requests from outside the status port, e.g. signals sent to PID 1.
	Stop <-chan string
	// Clock is the time source (default the real clock).
	Clock Clock
}

// Clock is the init's time source, replaceable in tests.
type Clock interface {
	Now() time.Time
	Sleep(d time.Duration)
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) Sleep(d time.Duration)                  { time.Sleep(d) }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// State is what the steps share.
type State struct {
	Sys        System
	Clock      Clock
	ConfigPath string
	Cfg        *bootcfg.Config
	Debug      bool
	// Ports maps virtio-serial port names to device paths, found after the mounts.
	Ports map[string]string
	// Hostname is the guest host name decided by the network step.
	Hostname string
	// Mounted lists container mounts to unmount at power off, innermost last.
	Mounted []string
	// Terminal is the runtime spec's process.terminal, set by the spec step.
	Terminal bool
	// MemoryLimit is the container's memory.max in bytes (0 = none), set by the spec step.
	MemoryLimit int64
	// Halt is how the VM ends (bootcfg.HaltPowerOff or HaltReboot), from the kernel command line.
	Halt string
	// ExitStatus is the workload's status once the run step is done.
	ExitStatus int
	// Stop carries stop requests (status port lines and signals).
	Stop <-chan string

	early    []bootcfg.Mount // early mounts that succeeded
	switched bool
	// statusPort is the status port, opened once read-write: a virtio port can be open only once.
	statusPort *os.File
	// kids are the agent's children, whose statuses the run step's reap loop hands over.
	kids         *children
	childrenOnce sync.Once
}

// errTimedOut is poll's error when the time ran out.
var errTimedOut = errors.New("timed out")

// poll calls try until it reports done or fails, for at most timeout (trying at least once),
// sleeping pollInterval on the clock between tries: the one bounded wait of the init (devices,
// ports and interfaces appear asynchronously). It returns try's error, or errTimedOut.
func (st *State) poll(timeout time.Duration, try func() (bool, error)) error {
	deadline := st.Clock.Now().Add(timeout)
	for {
		done, err := try()
		if done || err != nil {
			return err
		}
		if !st.Clock.Now().Before(deadline) {
			return errTimedOut
		}
		st.Clock.Sleep(pollInterval)
	}
}

func fsMode(perm uint32) os.FileMode { return os.FileMode(perm) & os.ModePerm }

// Console writes one line to /dev/console; errors are ignored (there is nowhere to report them).
func (st *State) Console(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if !strings.HasSuffix(line, "\n") {
		line += "\n"
	}
	if err := st.Sys.AppendFile(consolePath, []byte(line)); err != nil {
		os.Stderr.WriteString(line)
	}
}

// Debugf writes a line to the console in debug mode.
func (st *State) Debugf(format string, args ...any) {
	if st.Debug {
		st.Console("c2vm-init: debug: "+format, args...)
	}
}

const consolePath = "/dev/console"

// Boot runs the steps, reports the status and powers off. It returns the reported status only when
// PowerOff returns success, which a real machine never does; when PowerOff fails it retries
// forever. Panics are reported as failures of step "panic".
func Boot(ctx context.Context, sys System, opts Options) int {
	st := &State{Sys: sys, Clock: opts.Clock, ConfigPath: opts.ConfigPath, Stop: opts.Stop, Ports: map[string]string{}}
	if st.Clock == nil {
		st.Clock = realClock{}
	}
	if st.ConfigPath == "" {
		st.ConfigPath = bootcfg.Path
	}
	steps := opts.Steps
	if steps == nil {
		steps = Steps()
	}
	status := FailureStatus
	if name, err := runSteps(ctx, st, steps); err != nil {
		st.reportFailure(name, err)
	} else {
		status = st.ExitStatus
	}
	st.finish(status)
	return status
}

// runSteps runs the steps in order and returns the name and error of the first required one that
// fails.
func runSteps(ctx context.Context, st *State, steps []Step) (name string, err error) {
	defer func() {
		if r := recover(); r != nil {
			st.Debugf("panic stack: %s", debug.Stack())
			name, err = "panic", fmt.Errorf("%v", r)
		}
	}()
	var timings []string
	for _, s := range steps {
		start := st.Clock.Now()
		err := s.Run(ctx, st)
		timings = append(timings, fmt.Sprintf("step %s: %v", s.Name, st.Clock.Now().Sub(start).Round(time.Microsecond)))
		if st.Debug { // debug may be switched on by a step: log the earlier ones too
			for _, t := range timings {
				st.Debugf("%s", t)
			}
			timings = timings[:0]
		}
		if err != nil {
			if !s.Optional {
				return s.Name, err
			}
			st.Debugf("optional step %s failed: %v", s.Name, err)
		}
	}
	return "", nil
}

// failureLine is the one line the init prints when a step fails.
func failureLine(step string, err error) string {
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	return "c2vm-init: " + step + ": " + msg + "\n"
}

func (st *State) reportFailure(step string, err error) {
	line := failureLine(step, err)
	st.Console("%s", line)
	if st.statusPort == nil && step != "ports" {
		// The boot failed before the ports step (e.g. a missing module): find the status port now, so
		// that the host gets the line and the status instead of a VM that ended without one.
		if err := stepPorts(context.Background(), st); err != nil {
			st.Debugf("status port: %v", err)
		}
	}
	if err := st.writeStatus([]byte(line)); err != nil {
		st.Debugf("status port: %v", err)
	}
}

// finish reports the status, syncs, unmounts the container filesystems and powers off.
func (st *State) finish(status int) {
	defer func() {
		if r := recover(); r != nil { // never let a bug here stop the power off
			st.Console("c2vm-init: panic: %v", r)
			st.powerOff()
		}
	}()
	line := bootcfg.FormatStatus(status)
	if err := st.writeStatus([]byte(line)); err != nil {
		st.Debugf("status port: %v", err)
	}
	st.Console("%s", line)
	st.Sys.Sync()
	for i := len(st.Mounted) - 1; i >= 0; i-- {
		if err := st.Sys.Unmount(st.Mounted[i], 0); err != nil {
			st.Debugf("unmount %s: %v", st.Mounted[i], err)
		}
	}
	st.Sys.Sync()
	st.powerOff()
}

func (st *State) powerOff() {
	for {
		err := st.Sys.Halt(st.Halt)
		if err == nil {
			return
		}
		st.Console("c2vm-init: poweroff: %v", err)
		st.Clock.Sleep(time.Second)
	}
}
