package main

import (
	"strings"
	"testing"
)

func TestParseStopSignal(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{"", "", false},
		{"SIGTERM", "SIGTERM", false},
		{"usr1", "SIGUSR1", false},
		{"SIGRTMIN", "SIGRTMIN", false}, // as docker takes it
		{"RTMIN+3", "SIGRTMIN+3", false},
		{"9", "9", false},
		{"0", "", true},
		{"65", "", true},
		{"NOPE", "", true},
	}
	for _, tt := range tests {
		got, err := parseStopSignal(tt.in)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("parseStopSignal(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// TestRunTerminalFlags checks that -it parses as -i -t (the bundle error comes next), unlike an
// unknown combination.
func TestRunTerminalFlags(t *testing.T) {
	dir := t.TempDir() // not a bundle
	tests := []struct{ flag, want string }{
		{"-it", "is not a c2vm bundle"},
		{"-ti", "is not a c2vm bundle"},
		{"-xt", "flag provided but not defined: -xt"},
	}
	for _, tt := range tests {
		code, _, stderr := c2vm(t, "", "run", tt.flag, dir)
		if code != ExitFailure || !strings.Contains(stderr, tt.want) {
			t.Errorf("run %s: exit %d stderr %q, want exit %d and %q", tt.flag, code, stderr, ExitFailure, tt.want)
		}
	}
}
