package bootcfg

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The host-guest wire: every line, path and status both sides must agree on, with one format and
// one parse function each.

// Paths in the initrd.
const (
	InitPath = "/init"      // the guest init, run by the kernel as PID 1
	RuncPath = "/sbin/runc" // static runc
)

// Exit statuses, as docker uses them, beside the workload's own (0-255, 128+N for signal N).
const (
	StatusInitFailed = 125 // the init (or c2vm) itself failed
	StatusCannotRun  = 126 // the command exists but cannot be executed
	StatusNotFound   = 127 // the command was not found
)

// StopLine, written by the host on the status port, asks the init to stop the workload: its stop
// signal, then SIGKILL after the stop timeout.
const StopLine = "stop"

// FormatStatus is the line that reports the workload's exit status: "c2vm-exit-status: N\n".
func FormatStatus(n int) string { return StatusLinePrefix + strconv.Itoa(n) + "\n" }

// ParseStatus parses a FormatStatus line (trailing "\r\n" allowed); ok is false for anything else.
func ParseStatus(line string) (n int, ok bool) {
	rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), StatusLinePrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(rest))
	if err != nil || n < 0 || n > 255 {
		return 0, false
	}
	return n, true
}

// FormatWinsize is the line that sets the workload's terminal size: "winsize ROWS COLS\n".
func FormatWinsize(rows, cols uint16) string {
	return fmt.Sprintf("%s %d %d\n", WinsizeRequest, rows, cols)
}

// ParseWinsize parses a FormatWinsize line.
func ParseWinsize(line string) (rows, cols uint16, ok bool) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != WinsizeRequest {
		return 0, 0, false
	}
	r, err1 := strconv.ParseUint(f[1], 10, 16)
	c, err2 := strconv.ParseUint(f[2], 10, 16)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uint16(r), uint16(c), true
}

// MountFlags maps the flag names of Mount.Flags to mount(2) flags.
var MountFlags = map[string]uintptr{
	"ro": unix.MS_RDONLY, "rw": 0, "nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV,
	"noexec": unix.MS_NOEXEC, "relatime": unix.MS_RELATIME, "noatime": unix.MS_NOATIME,
	"nodiratime": unix.MS_NODIRATIME, "strictatime": unix.MS_STRICTATIME, "sync": unix.MS_SYNCHRONOUS,
	"dirsync": unix.MS_DIRSYNC, "bind": unix.MS_BIND, "rbind": unix.MS_BIND | unix.MS_REC,
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC, "shared": unix.MS_SHARED,
	"rshared": unix.MS_SHARED | unix.MS_REC, "slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"remount": unix.MS_REMOUNT,
}

// ParseMountFlags turns flag names into mount(2) flags.
func ParseMountFlags(names []string) (uintptr, error) {
	var f uintptr
	for _, n := range names {
		v, ok := MountFlags[n]
		if !ok {
			return 0, fmt.Errorf("unknown mount flag %q", n)
		}
		f |= v
	}
	return f, nil
}
