package main

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// parseStopSignal checks a --stop-signal value (a name with or without SIG, or a number, as docker
// takes it) and returns the form runc kill takes: SIGNAME, or the number.
func parseStopSignal(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return "", fmt.Errorf("run: --stop-signal %q: no such signal (want a name such as SIGTERM, or 1-64)", s)
		}
		return s, nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if unix.SignalNum(name) == 0 {
		return "", fmt.Errorf("run: --stop-signal %q: no such signal (want a name such as SIGTERM, or 1-64)", s)
	}
	return name, nil
}
