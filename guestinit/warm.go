package guestinit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/c2vm/c2vm/bootcfg"
	"golang.org/x/sys/unix"
)

// The ready point (bootcfg.Config.ReadyPoint): for a warm start the host saves the VM after the
// init has mounted everything and created the container, so that a run restored from the saved
// VM has only `runc start` left. The init then waits for the host's go line; whatever it carries
// (fresh entropy, the wall clock) is applied before the workload starts, because every run
// restored from one saved VM begins with the same kernel RNG state and the clock of the save.

// containerPidFile is where runc create writes the container's init process.
const containerPidFile = "/run/c2vm/container.pid"

// goRetry is how long the init waits before reading the status port again when it read EOF (its
// host end is not connected, as while a restored VM's host has not yet attached).
const goRetry = 20 * time.Millisecond

// warmSys is the syscalls the go line needs, a seam for tests.
var warmSys interface {
	Reseed(entropy []byte) error
	SetClock(t time.Time) error
} = linuxWarm{}

// startAtReadyPoint creates the container with runc create, reports the ready point on the status
// port, waits for the host's go line, makes the machine new (reseeds the RNG, sets the clock) and
// starts the container. It returns the container's init process, which the run step reaps as it
// reaps runc run, and the requests (stop lines) the host sent before its go line. When runc create
// fails, pid is 0 and status is the run's exit status (the workload's command missing: 127, ...).
func startAtReadyPoint(st *State, stdio []*os.File) (pid int, early []string, status int, err error) {
	id := st.Cfg.Container.ID
	create := []string{runcPath, "--root", runcRoot, "--log", runcLog, "--log-format", "json",
		"create", "--bundle", st.Cfg.Container.BundleDir, "--pid-file", containerPidFile, id}
	cpid, err := st.Sys.StartProcess(create, stdio)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("start runc create: %w", err)
	}
	ws, err := reap(st.Sys, cpid, st.children().deliver)
	if err != nil {
		return 0, nil, 0, err
	}
	if code := ExitCode(ws); code != 0 {
		return 0, nil, execFailureStatus(st, code), nil
	}
	data, err := st.Sys.ReadFile(containerPidFile)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("runc create: %w", err)
	}
	if pid, err = strconv.Atoi(strings.TrimSpace(string(data))); err != nil || pid <= 0 {
		return 0, nil, 0, fmt.Errorf("runc create: %s: bad pid %q", containerPidFile, data)
	}
	st.Debugf("container created, pid %d; at the ready point", pid)
	if st.statusPort != nil {
		if err := st.writeStatus([]byte(bootcfg.ReadyPointLine + "\n")); err != nil {
			return 0, nil, 0, fmt.Errorf("ready point: %w", err)
		}
		entropy, now, lines, err := readGo(st.statusPort, st.Clock)
		if err != nil {
			return 0, nil, 0, fmt.Errorf("ready point: %w", err)
		}
		early = lines
		if err := warmSys.Reseed(entropy); err != nil {
			return 0, nil, 0, fmt.Errorf("ready point: reseed the RNG: %w", err)
		}
		if err := warmSys.SetClock(now); err != nil {
			return 0, nil, 0, fmt.Errorf("ready point: set the clock: %w", err)
		}
		st.Debugf("go: %d bytes of entropy, clock %s", len(entropy), now.UTC().Format(time.RFC3339Nano))
	}
	if err := openExecFifo(st, id); err == nil {
		st.Debugf("container started through its exec fifo")
		return pid, early, 0, nil
	} else {
		st.Debugf("exec fifo: %v: runc start", err)
	}
	start := []string{runcPath, "--root", runcRoot, "--log", runcLog, "--log-format", "json", "start", id}
	spid, done, err := st.children().start(func() (int, error) { return st.Sys.StartProcess(start, stdio) })
	if err != nil {
		runcKill(st, "KILL")
		return pid, early, 0, nil // the run step reaps the killed container: 137
	}
	// The run step's reap loop delivers runc start's status; a start that failed leaves the
	// container created forever, so it is killed.
	goSafe(st, "runc start", func() {
		if ws := <-done; ExitCode(ws) != 0 {
			st.Console("c2vm-init: runc start failed (status %d): killing the container", ExitCode(ws))
			runcKill(st, "KILL")
		}
	})
	st.Debugf("runc start, pid %d", spid)
	return pid, early, 0, nil
}

// execFifoWait bounds the wait for the container's init to take the exec fifo.
const execFifoWait = 10 * time.Second

// openExecFifo starts a created container as `runc start` does, without its cost (a Go program's
// start, ~1 s under TCG): it opens the exec fifo runc create left in the container's state
// directory, where the container's init waits to exec the workload, reads the init's byte and
// removes the fifo (which makes runc see the container running). The fifo is runc's own protocol
// (libcontainer's exec.fifo, runc 1.0 to 1.2); without it the caller runs runc start.
func openExecFifo(st *State, id string) error {
	p := path.Join(runcRoot, id, "exec.fifo")
	fi, err := st.Sys.Lstat(p)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeNamedPipe == 0 {
		return fmt.Errorf("%s is not a fifo", p)
	}
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		f, err := st.Sys.OpenFile(p, os.O_RDONLY, 0) // blocks until the init opens its end: it has
		if err != nil {
			done <- result{err: err}
			return
		}
		defer f.Close()
		data, err := io.ReadAll(f) // EOF once the init has exec'd the workload (or died)
		done <- result{n: len(data), err: err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return r.err
		}
		if r.n == 0 {
			return fmt.Errorf("%s: the container's init wrote nothing", p)
		}
	case <-st.Clock.After(execFifoWait):
		st.Console("c2vm-init: the container's init did not take %s within %v: killing it", p, execFifoWait)
		runcKill(st, "KILL")
		return nil // the run step reaps the killed container
	}
	_ = os.Remove(p) // as runc start does: the container is running now
	return nil
}

// readGo reads lines from the status port until the host's go line, reading one byte at a time
// so that nothing after it is taken from the run step's reader. Other lines (stop requests) are
// returned to be handled once the container runs. EOF means the host end is not connected yet.
func readGo(r io.Reader, clock Clock) (entropy []byte, now time.Time, early []string, err error) {
	var line []byte
	b := make([]byte, 1)
	for {
		n, err := r.Read(b)
		if n == 1 {
			if b[0] != '\n' {
				if len(line) > 16<<10 {
					return nil, time.Time{}, nil, errors.New("status port: line too long")
				}
				line = append(line, b[0])
				continue
			}
			s := strings.TrimSpace(string(line))
			line = line[:0]
			if e, t, ok := bootcfg.ParseGo(s); ok {
				return e, t, early, nil
			}
			if s != "" {
				early = append(early, s)
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, time.Time{}, nil, fmt.Errorf("status port: %w", err)
		}
		clock.Sleep(goRetry)
	}
}

// linuxWarm is warmSys on Linux.
type linuxWarm struct{}

// Linux's random ioctls (include/uapi/linux/random.h), the same on every architecture.
const (
	rndAddEntropy  = 0x40085203 // _IOW('R', 0x03, int[2])
	rndReseedCRNG  = 0x5207     // _IO('R', 0x07), Linux 4.17+
	randomDevice   = "/dev/urandom"
	bitsPerByteMax = 8
)

// Reseed adds entropy to the kernel's pool, credited (RNDADDENTROPY), and has the CRNG reseed
// from it at once (RNDRESEEDCRNG; older kernels lack it and reseed on their own schedule).
func (linuxWarm) Reseed(entropy []byte) error {
	f, err := os.OpenFile(randomDevice, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	info := randPoolInfo(entropy)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), rndAddEntropy, uintptr(unsafe.Pointer(&info[0]))); errno != 0 {
		return fmt.Errorf("%s: RNDADDENTROPY: %w", randomDevice, errno)
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), rndReseedCRNG, 0); errno != 0 && errno != unix.EINVAL && errno != unix.ENOTTY {
		return fmt.Errorf("%s: RNDRESEEDCRNG: %w", randomDevice, errno)
	}
	return nil
}

// randPoolInfo encodes struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
// crediting every bit of entropy.
func randPoolInfo(entropy []byte) []byte {
	n := (len(entropy) + 3) &^ 3
	b := make([]byte, 8+n)
	binary.NativeEndian.PutUint32(b[0:], uint32(len(entropy)*bitsPerByteMax))
	binary.NativeEndian.PutUint32(b[4:], uint32(len(entropy)))
	copy(b[8:], entropy)
	return b
}

// SetClock sets the wall clock.
func (linuxWarm) SetClock(t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}
