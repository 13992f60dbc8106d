package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/moby/sys/signal"
)

// parseStopSignal checks a --stop-signal value as docker does (moby/sys/signal: a name with or
// without SIG, or a number) and returns the form runc kill takes: SIGNAME, or the number as given.
func parseStopSignal(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	sig, err := signal.ParseSignal(s)
	if err != nil || sig < 1 || sig > 64 {
		return "", fmt.Errorf("run: --stop-signal %q: no such signal (want a name such as SIGTERM, or 1-64)", s)
	}
	if _, numeric := strconv.Atoi(s); numeric == nil {
		return s, nil
	}
	return "SIG" + strings.TrimPrefix(strings.ToUpper(s), "SIG"), nil
}
