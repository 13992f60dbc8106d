package convert

import (
	"fmt"
	"path"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/convert/spec"
)

// ApplyChanges applies Dockerfile instructions to an image config, the way `docker import
// --change` takes them and with a Dockerfile's meaning (parsed by BuildKit's own parser): CMD,
// ENTRYPOINT (which clears an earlier CMD unless a later change sets one), ENV, USER, WORKDIR
// (relative to the current one), EXPOSE, VOLUME, STOPSIGNAL and LABEL. The shell forms run under
// /bin/sh -c.
func ApplyChanges(cfg ocispec.ImageConfig, changes []string) (ocispec.ImageConfig, error) {
	cmdSet := false
	for _, ch := range changes {
		cmd, err := parseChange(ch, cfg.Env)
		if err != nil {
			return cfg, err
		}
		switch c := cmd.(type) {
		case *instructions.CmdCommand:
			cfg.Cmd, cmdSet = shellForm(c.ShellDependantCmdLine), true
		case *instructions.EntrypointCommand:
			cfg.Entrypoint = shellForm(c.ShellDependantCmdLine)
			if !cmdSet {
				cfg.Cmd = nil
			}
		case *instructions.EnvCommand:
			var kvs []string
			for _, kv := range c.Env {
				kvs = append(kvs, kv.Key+"="+kv.Value)
			}
			cfg.Env = spec.MergeEnv(cfg.Env, kvs)
		case *instructions.UserCommand:
			cfg.User = c.User
		case *instructions.WorkdirCommand:
			cfg.WorkingDir = path.Join("/", cfg.WorkingDir, c.Path)
			if path.IsAbs(c.Path) {
				cfg.WorkingDir = path.Clean(c.Path)
			}
		case *instructions.ExposeCommand:
			cfg.ExposedPorts = addKeys(cfg.ExposedPorts, c.Ports, func(p string) string {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				return p
			})
		case *instructions.VolumeCommand:
			cfg.Volumes = addKeys(cfg.Volumes, c.Volumes, func(v string) string { return v })
		case *instructions.StopSignalCommand:
			cfg.StopSignal = c.Signal
		case *instructions.LabelCommand:
			if cfg.Labels == nil {
				cfg.Labels = map[string]string{}
			}
			for _, kv := range c.Labels {
				cfg.Labels[kv.Key] = kv.Value
			}
		default:
			return cfg, fmt.Errorf("--change %q: only CMD, ENTRYPOINT, ENV, USER, WORKDIR, EXPOSE, VOLUME, STOPSIGNAL and LABEL change an image config", ch)
		}
	}
	return cfg, nil
}

// parseChange parses one instruction with BuildKit's Dockerfile parser and expands its words
// (quotes, $VAR from the image's environment) with BuildKit's shell lexer, as a build would.
func parseChange(ch string, env []string) (any, error) {
	res, err := parser.Parse(strings.NewReader(ch))
	if err != nil {
		return nil, fmt.Errorf("--change %q: %w", ch, err)
	}
	if len(res.AST.Children) != 1 {
		return nil, fmt.Errorf("--change %q: want one Dockerfile instruction, got %d", ch, len(res.AST.Children))
	}
	cmd, err := instructions.ParseCommand(res.AST.Children[0])
	if err != nil {
		return nil, fmt.Errorf("--change %q: %w", ch, err)
	}
	if e, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
		lex := shell.NewLex('\\')
		err := e.Expand(func(w string) (string, error) {
			r, _, err := lex.ProcessWord(w, envGetter(env))
			return r, err
		})
		if err != nil {
			return nil, fmt.Errorf("--change %q: %w", ch, err)
		}
	}
	return cmd, nil
}

// envGetter serves KEY=VAL entries to BuildKit's lexer.
type envGetter []string

func (e envGetter) Get(key string) (string, bool) {
	for i := len(e) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(e[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

func (e envGetter) Keys() []string {
	var keys []string
	for _, kv := range e {
		k, _, _ := strings.Cut(kv, "=")
		keys = append(keys, k)
	}
	return keys
}

// shellForm returns the exec form of a command line: the JSON form as given, the shell form
// under /bin/sh -c (the Linux default SHELL).
func shellForm(c instructions.ShellDependantCmdLine) []string {
	if c.PrependShell {
		return []string{"/bin/sh", "-c", strings.Join(c.CmdLine, " ")}
	}
	return append([]string{}, c.CmdLine...)
}

func addKeys(m map[string]struct{}, keys []string, norm func(string) string) map[string]struct{} {
	if m == nil {
		m = map[string]struct{}{}
	}
	for _, k := range keys {
		m[norm(k)] = struct{}{}
	}
	return m
}
