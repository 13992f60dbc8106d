package spec

import (
	"errors"
	"fmt"
	"path"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultPath is PATH when neither the image nor the overrides set it.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ErrNoCommand is returned when the image and the overrides give nothing to run.
var ErrNoCommand = errors.New("image has no command: set --entrypoint or pass a command")

// processArgs joins entrypoint and cmd the way docker does: an overridden entrypoint drops the
// image's Cmd, and a given Cmd replaces the image's.
func processArgs(c ocispec.ImageConfig, o Overrides) ([]string, error) {
	entrypoint, cmd := c.Entrypoint, c.Cmd
	if o.Entrypoint != nil {
		entrypoint, cmd = *o.Entrypoint, nil
	}
	if o.Cmd != nil {
		cmd = o.Cmd
	}
	args := append(append([]string{}, entrypoint...), cmd...)
	if len(args) == 0 {
		return nil, ErrNoCommand
	}
	return args, nil
}

// workingDir returns the override, else the image's WorkingDir made absolute, else "/".
func workingDir(c ocispec.ImageConfig, o Overrides) (string, error) {
	if o.WorkingDir != "" {
		if !path.IsAbs(o.WorkingDir) {
			return "", fmt.Errorf("working directory %q: must be an absolute path", o.WorkingDir)
		}
		return path.Clean(o.WorkingDir), nil
	}
	return path.Join("/", c.WorkingDir), nil
}

// envInput is what the process environment is built from.
type envInput struct {
	image, overrides []string
	hostname, home   string
	terminal         bool
}

// buildEnv returns the process environment: defaults (PATH, HOSTNAME, TERM with a terminal), the
// image's Env and the overrides merged by key (later wins, in place; new keys appended in order;
// "KEY" without "=" in the overrides removes KEY), then HOME when still unset.
func buildEnv(in envInput) []string {
	env := []string{"PATH=" + DefaultPath, "HOSTNAME=" + in.hostname}
	if in.terminal {
		env = append(env, "TERM=xterm")
	}
	env = mergeEnv(env, in.image, false)
	env = mergeEnv(env, in.overrides, true)
	if _, ok := lookupEnv(env, "HOME"); !ok {
		env = append(env, "HOME="+in.home)
	}
	return env
}

// ApplyToConfig returns cfg with the overrides that shape an image config — Entrypoint, Cmd, Env,
// User, WorkingDir — applied as docker run applies them: a new entrypoint drops the image's Cmd,
// Env entries replace by key (a bare KEY unsets it). Convert bakes these into a bundle; the others
// (Hostname, Terminal, ReadOnly, CapAdd, CapDrop) exist only at run time (see RunTimeOnly).
func (o Overrides) ApplyToConfig(cfg ocispec.ImageConfig) ocispec.ImageConfig {
	if o.Entrypoint != nil {
		cfg.Entrypoint = append([]string(nil), (*o.Entrypoint)...)
		cfg.Cmd = nil
	}
	if o.Cmd != nil {
		cfg.Cmd = append([]string(nil), o.Cmd...)
	}
	cfg.Env = MergeEnv(cfg.Env, o.Env)
	if o.User != "" {
		cfg.User = o.User
	}
	if o.WorkingDir != "" {
		cfg.WorkingDir = o.WorkingDir
	}
	return cfg
}

// RunTimeOnly names the overrides set in o that an image config cannot carry (nil when none is).
func (o Overrides) RunTimeOnly() []string {
	var set []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"Hostname", o.Hostname != ""}, {"Terminal", o.Terminal}, {"ReadOnly", o.ReadOnly},
		{"CapAdd", len(o.CapAdd) > 0}, {"CapDrop", len(o.CapDrop) > 0},
	} {
		if f.set {
			set = append(set, f.name)
		}
	}
	return set
}

// MergeEnv returns base with each KEY=VAL of add set by key (in place, new keys appended in order)
// and each bare KEY removed, as docker merges run-time -e with an image's Env (moby's
// ReplaceOrAppendEnvValues). It is the one env-merging rule for convert- and run-time overrides.
func MergeEnv(base, add []string) []string { return mergeEnv(base, add, true) }

// mergeEnv returns base with each of add set by key. With unset, an entry without "=" removes its
// key; otherwise such entries are dropped (an image Env entry must be KEY=VAL).
func mergeEnv(base, add []string, unset bool) []string {
	out := append([]string{}, base...)
	for _, kv := range add {
		key, _, hasValue := strings.Cut(kv, "=")
		if key == "" {
			continue
		}
		i := indexEnv(out, key)
		switch {
		case !hasValue && unset && i >= 0:
			out = append(out[:i], out[i+1:]...)
		case !hasValue:
		case i >= 0:
			out[i] = kv
		default:
			out = append(out, kv)
		}
	}
	return out
}

func indexEnv(env []string, key string) int {
	for i, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return i
		}
	}
	return -1
}

func lookupEnv(env []string, key string) (string, bool) {
	i := indexEnv(env, key)
	if i < 0 {
		return "", false
	}
	_, v, _ := strings.Cut(env[i], "=")
	return v, true
}
