package bootcfg

import (
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// The warm-start wire. With Config.ReadyPoint the init creates the container (runc create), writes
// ReadyPointLine on the status port and waits for a go line from the host before it starts the
// container. The host saves the VM there (or, restoring a saved VM, resumes it there) and then
// writes the go line: fresh entropy for the guest's RNG and the host's wall clock, so that every
// run from one saved VM is a new machine.

// ReadyPointLine is the init's line on the status port at its ready point.
const ReadyPointLine = "c2vm-ready-point"

// GoRequest starts the host's go line: "go HEX-ENTROPY UNIX-NANOSECONDS".
const GoRequest = "go"

// GoEntropyBytes is how much entropy the host sends in a go line.
const GoEntropyBytes = 64

// FormatGo is the host's go line.
func FormatGo(entropy []byte, now time.Time) string {
	return GoRequest + " " + hex.EncodeToString(entropy) + " " + strconv.FormatInt(now.UnixNano(), 10) + "\n"
}

// ParseGo parses a FormatGo line (trailing "\r\n" allowed); ok is false for anything else.
func ParseGo(line string) (entropy []byte, now time.Time, ok bool) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != GoRequest {
		return nil, time.Time{}, false
	}
	e, err := hex.DecodeString(f[1])
	if err != nil || len(e) == 0 || len(e) > 4096 {
		return nil, time.Time{}, false
	}
	ns, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || ns <= 0 {
		return nil, time.Time{}, false
	}
	return e, time.Unix(0, ns), true
}
