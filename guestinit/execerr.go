package guestinit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"regexp"
	"strings"

	"github.com/c2vm/c2vm/bootcfg"
)

// Docker's statuses for a workload that could not be started (runc's own message still reaches the
// workload's stderr).
const (
	// CannotRunStatus: the command exists but cannot be executed (permissions, format).
	CannotRunStatus = bootcfg.StatusCannotRun
	// NotFoundStatus: the command was not found.
	NotFoundStatus = bootcfg.StatusNotFound
)

// runcLog is where runc writes its log (JSON lines): the init reads it when runc fails, to tell a
// command that cannot be run from a workload that exited 1.
const runcLog = "/run/c2vm/runc.log"

// runcFailedStatus is runc's exit status when it fails itself.
const runcFailedStatus = 1

// execFailureStatus maps runc's exit status to docker's 126/127 when runc failed because the
// workload's command is missing or cannot be executed; otherwise it returns status unchanged.
func execFailureStatus(st *State, status int) int {
	if status != runcFailedStatus {
		return status
	}
	data, err := st.Sys.ReadFile(runcLog)
	if err != nil {
		return status
	}
	if code := classifyRuncLog(data); code != 0 {
		st.Debugf("runc could not start the workload: status %d", code)
		return code
	}
	return status
}

// classifyRuncLog looks at runc's error entries for a failed exec of the workload's command and
// returns 127 (not found), 126 (cannot be run) or 0 (some other failure, or none).
func classifyRuncLog(data []byte) int {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Level != "error" {
			continue
		}
		if code := classifyExecError(e.Msg); code != 0 {
			return code
		}
	}
	return 0
}

// execErr matches the end of runc's message when exec'ing the command failed: `exec: "NAME": ERR`
// from runc's lookup of the command, `exec PATH: ERR` from execve.
var execErr = regexp.MustCompile(`(?:^|: )exec(?:: "[^"]*"| [^:"]+): (.+)$`)

// classifyExecError classifies one runc error message, as docker does for its start errors. Only a
// failed exec of the command counts, so that a missing mount source is not taken for a missing
// command.
func classifyExecError(msg string) int {
	m := execErr.FindStringSubmatch(strings.TrimSpace(msg))
	if m == nil || !strings.Contains(msg, "unable to start container process") {
		return 0
	}
	switch cause := m[1]; {
	case strings.Contains(cause, "executable file not found"),
		strings.Contains(cause, "no such file or directory"),
		strings.Contains(cause, "not a directory"):
		return NotFoundStatus
	case strings.Contains(cause, "permission denied"),
		strings.Contains(cause, "exec format error"),
		strings.Contains(cause, "is a directory"):
		return CannotRunStatus
	}
	return 0
}
