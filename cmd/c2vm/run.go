package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/c2vm/c2vm/bundle"
	"github.com/c2vm/c2vm/convert/spec"
	"github.com/c2vm/c2vm/internal/artifact"
	"github.com/c2vm/c2vm/internal/launch"
	"github.com/c2vm/c2vm/internal/registry"
	"github.com/c2vm/c2vm/internal/vm"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "boot a VM bundle and run its workload; exits with the workload's exit status",
		ArgsUsage: "DIR|[docker://]HOST/REPO[:TAG] [-- COMMAND ARGS...]",
		// -it, as in docker.
		UseShortOptionHandling: true,
		Flags: append(append(terminalFlags(), []cli.Flag{
			&cli.StringFlag{Name: "memory", Aliases: []string{"m"}, Usage: "guest memory: MiB (512) or a size (512m, 1g)", DefaultText: "the bundle's"},
			&cli.StringFlag{Name: "cpus", Usage: "guest CPUs (a fraction such as 0.5 rounds up)", DefaultText: "the bundle's"},
			&cli.StringFlag{Name: "timeout", Usage: "kill the VM after this long: seconds (120) or a duration (2m; 0 = never)"},
			&cli.StringFlag{Name: "entrypoint", Usage: "override the ENTRYPOINT (\"\" clears it)"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set KEY=VAL, or KEY to take it from the host environment"},
			&cli.StringSliceFlag{Name: "env-file", Usage: "read KEY=VAL lines from a file"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "run as name, uid, uid:gid or user:group"},
			&cli.StringFlag{Name: "workdir", Aliases: []string{"w"}, Usage: "working directory of the workload"},
			&cli.StringFlag{Name: "hostname", Aliases: []string{"h"}, Usage: "guest host name"},
			&cli.StringFlag{Name: "network", Value: launch.NetworkUser, Usage: "user (QEMU user-mode networking) or none (loopback only)"},
			&cli.StringSliceFlag{Name: "dns", Usage: "DNS server for the guest's resolv.conf"},
			&cli.StringSliceFlag{Name: "publish", Aliases: []string{"p"}, Usage: "publish a port: [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]"},
			&cli.StringSliceFlag{Name: "volume", Aliases: []string{"v"}, Usage: "bind a host directory or file /HOST/PATH:TARGET[:ro] (or ./PATH), or a volume NAME:TARGET[:ro] (created on first use), or an ext4 disk image IMAGE.img:TARGET[:ro]"},
			&cli.StringSliceFlag{Name: "mount", Usage: "docker's --mount: type=bind|volume|tmpfs, or c2vm's type=block (an ext4 disk image); source=, target=, readonly"},
			&cli.StringFlag{Name: "persist", Usage: "keep the root filesystem's changes in DIR/upper.img (created on first use)"},
			&cli.StringFlag{Name: "volume-size", Value: "1G", Usage: "size of new named volumes and --persist disks (sparse)"},
			&cli.IntFlag{Name: "stop-timeout", Usage: "seconds between the stop signal and SIGKILL", DefaultText: "10"},
			&cli.StringFlag{Name: "stop-signal", Usage: "signal that stops the workload on Ctrl-C/SIGTERM", DefaultText: "the image's, else SIGTERM"},
			&cli.StringFlag{Name: "accel", Value: vm.AccelAuto, EnvVars: []string{"C2VM_ACCEL"}, Usage: "auto (KVM when hardware virtualization backs /dev/kvm, else TCG), kvm or tcg"},
			&cli.BoolFlag{Name: "debug", Usage: "show the kernel console and the init's steps on stderr"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the QEMU command line run would use, and stop"},
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "run the VM in the background under a supervisor and print its ID (see ps, logs, stop, rm, wait)"},
			&cli.StringFlag{Name: "name", Usage: "name the detached VM (-d)"},
			snapshotFlag(),
		}...), append(dockerFlags(), registryFlags()...)...),
		Action: runRun,
	}
}

func runRun(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) == 0 {
		return usageError("run: want a bundle DIR argument")
	}
	if c.Bool("detach") {
		return runDetached(c)
	}
	if c.IsSet("name") {
		return usageError("run: --name names a detached VM: add -d")
	}
	dir, cmd := args[0], args[1:]
	if len(cmd) > 0 && cmd[0] == "--" {
		cmd = cmd[1:]
	}
	opts, err := runOptions(c, cmd)
	if err != nil {
		return err
	}
	timeout, err := parseTimeout(c.String("timeout"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	// From here on signals are ours: before the VM runs they cancel (temporary files are removed),
	// then the first asks the guest to stop and the second kills the VM.
	stop := make(chan struct{}, 1)
	var running, brokenPipe atomic.Bool
	defer handleSignals(cancel, stop, &running, &brokenPipe)()
	if t := timeout; t > 0 {
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	if dir, err = runBundleDir(c, dir); err != nil {
		return err
	}
	if dir, err = bundle.Resolve(dir, c.String("platform")); err != nil { // a bundle set: the platform's
		return err
	}
	snapMode, err := snapshotMode(c, opts) // snapshot.go
	if err != nil {
		return err
	}
	opts.ReadyPoint = snapMode != snapshotNever
	plan, err := launch.Prepare(ctx, dir, opts)
	if err != nil {
		return err
	}
	defer plan.Close()
	cfg := plan.VM
	if c.Bool("dry-run") {
		argv, err := vm.DryRun(cfg)
		if err != nil {
			return fmt.Errorf("run: %w", err)
		}
		fmt.Fprintln(c.App.Writer, quoteArgs(argv))
		return nil
	}
	cfg.Stdout, cfg.Stderr = c.App.Writer, c.App.ErrWriter
	restore, err := setupTerminal(c, &cfg)
	defer restore()
	if err != nil {
		return err
	}
	cfg.OnAccel = func(a vm.Accel) { reportAccel(c, a) }
	if c.Bool("debug") {
		cfg.Console = c.App.ErrWriter
		cfg.OnStart = func(argv []string) { fmt.Fprintln(c.App.ErrWriter, "c2vm: qemu:", quoteArgs(argv)) }
	}
	cfg.Stop = stop
	warm, err := prepareWarm(c, snapMode, dir, &cfg)
	if err != nil {
		return err
	}
	running.Store(true)
	res, err := warm.boot(ctx, cfg) // bootVM: vm.Run, or under run -d's supervisor (detach.go)
	if brokenPipe.Load() {
		// As docker: the reader of our output went away (c2vm run ... | head -1).
		fmt.Fprintln(c.App.ErrWriter, "c2vm: write /dev/stdout: broken pipe")
		return exitError{code: 1}
	}
	if err != nil {
		return vmError(err, res, timeout)
	}
	return exitError{code: res.ExitCode}
}

// runBundleDir returns the bundle to boot: DIR itself, or for a registry reference that is not a
// local path the bundle pulled (verified) into the cache.
func runBundleDir(c *cli.Context, arg string) (string, error) {
	if _, err := os.Stat(arg); err == nil || !registry.LooksLikeReference(arg) {
		return arg, nil
	}
	rc, err := registryClient(c)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	return artifact.PullCached(c.Context, rc, arg, rc.CacheDir(), c.String("platform"))
}

// reportAccel says which accelerator a boot uses: always when KVM failed and TCG takes over, and
// with --debug also which one was chosen and why.
func reportAccel(c *cli.Context, a vm.Accel) {
	if a.Fallback != "" {
		fmt.Fprintf(c.App.ErrWriter, "c2vm: KVM cannot run this guest here (%s); using TCG (slower)\n", a.Fallback)
		return
	}
	if c.Bool("debug") {
		how := "chosen"
		if a.Auto {
			how = "auto"
		}
		fmt.Fprintf(c.App.ErrWriter, "c2vm: accelerator %s (%s: %s)\n", a.Name, how, a.Reason)
	}
}

// parseTimeout reads --timeout: a bare number is seconds, as docker's --stop-timeout; else a Go
// duration such as 90s or 2m.
func parseTimeout(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, usageError("run: --timeout %q: want seconds (120) or a duration (90s, 2m)", s)
	}
	return d, nil
}

// handleSignals turns the first SIGINT/SIGTERM while the VM runs into a stop request to the guest
// and any other into killing it (or cancelling the run before the VM starts). SIGHUP and SIGPIPE
// (the terminal or the reader of our output went away) cancel at once. It returns a function that
// stops listening.
func handleSignals(kill context.CancelFunc, stop chan<- struct{}, running, brokenPipe *atomic.Bool) func() {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	done := make(chan struct{})
	go func() {
		n := 0
		for {
			select {
			case s := <-sig:
				n++
				if s == syscall.SIGPIPE {
					brokenPipe.Store(true)
				}
				if n > 1 || !running.Load() || s == syscall.SIGHUP || s == syscall.SIGPIPE {
					kill()
					continue
				}
				select {
				case stop <- struct{}{}:
				default:
				}
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(sig); close(done) }
}

func vmError(err error, res *vm.Result, timeout time.Duration) error {
	if errors.Is(err, context.Canceled) {
		return err // Main reports "interrupted" and exits 130
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("run: the VM did not finish within --timeout %s and was killed", timeout)
	}
	msg := "run: " + err.Error()
	if res != nil && res.ConsoleTail != "" && errors.Is(err, vm.ErrNoStatus) && !errors.Is(err, vm.ErrGuestMemory) {
		msg += " (run with --debug to see the console; last console line: " + vm.LastLine(res.ConsoleTail) + ")"
	}
	return errors.New(msg)
}

func runOptions(c *cli.Context, cmd []string) (launch.Options, error) {
	env, err := runEnv(c.StringSlice("env-file"), c.StringSlice("env"))
	if err != nil {
		return launch.Options{}, err
	}
	fwds, err := parsePublish(c.StringSlice("publish"))
	if err != nil {
		return launch.Options{}, err
	}
	if _, err := vm.ParseAccel(c.String("accel")); err != nil {
		return launch.Options{}, usageError("run: --accel (or C2VM_ACCEL): %v", err)
	}
	net := c.String("network")
	if net != launch.NetworkUser && net != launch.NetworkNone {
		return launch.Options{}, usageError("run: --network %q: want user or none", net)
	}
	if net == launch.NetworkNone && len(fwds) > 0 {
		return launch.Options{}, usageError("run: conflicting options: --publish needs a network, and --network none has none")
	}
	mem, err := parseMemory("run: --memory", c.String("memory"))
	if err != nil {
		return launch.Options{}, err
	}
	cpus, err := parseCPUs("run: --cpus", c.String("cpus"))
	if err != nil {
		return launch.Options{}, err
	}
	o := launch.Options{
		Overrides: spec.Overrides{
			Env: env, User: c.String("user"), WorkingDir: c.String("workdir"), Hostname: c.String("hostname"),
			Terminal: c.Bool("tty"),
		},
		MemoryMiB: mem, CPUs: cpus, Network: net, DNS: c.StringSlice("dns"),
		Forwards: fwds, StopTimeout: c.Int("stop-timeout"), Debug: c.Bool("debug"), Accel: c.String("accel"),
	}
	if err := volumeOptions(c, &o); err != nil {
		return launch.Options{}, err
	}
	if err := dockerOptions(c, &o); err != nil {
		return launch.Options{}, err
	}
	if o.StopSignal, err = parseStopSignal(c.String("stop-signal")); err != nil {
		return launch.Options{}, err
	}
	if len(cmd) > 0 {
		o.Overrides.Cmd = cmd
	}
	o.Overrides.Entrypoint = entrypointFlag(c)
	return o, nil
}

// runEnv collects KEY=VAL entries from env files, then -e flags; "-e KEY" takes KEY from the host,
// and when the host has no KEY it unsets the image's, as docker does.
func runEnv(files, flags []string) ([]string, error) {
	var env []string
	for _, f := range files {
		lines, err := readEnvFile(f)
		if err != nil {
			return nil, err
		}
		env = append(env, lines...)
	}
	for _, e := range flags {
		if !strings.Contains(e, "=") {
			if v, ok := os.LookupEnv(e); ok {
				e += "=" + v
			}
		}
		env = append(env, e)
	}
	return env, nil
}

// readEnvFile reads an env file by docker's rules (docker/cli opts.ParseEnvFile): leading
// whitespace is dropped, trailing whitespace is kept, '#' starts a comment line, a name with
// whitespace or an empty name is an error, and a bare NAME takes the host's value (or is skipped).
func readEnvFile(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("run: --env-file: %w", err)
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("run: --env-file %s: not valid UTF-8", path)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var env []string
	for n, raw := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		line := strings.TrimLeftFunc(strings.TrimSuffix(raw, "\r"), unicode.IsSpace)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, hasValue := strings.Cut(line, "=")
		switch {
		case strings.ContainsAny(name, " \t"):
			return nil, fmt.Errorf("run: --env-file %s:%d: poorly formatted environment: variable '%s' contains whitespaces", path, n+1, name)
		case name == "":
			return nil, fmt.Errorf("run: --env-file %s:%d: poorly formatted environment: no variable name on line '%s'", path, n+1, line)
		case hasValue:
			env = append(env, name+"="+value)
		default:
			if v, ok := os.LookupEnv(name); ok {
				env = append(env, name+"="+v)
			}
		}
	}
	return env, nil
}

// parsePublish parses -p [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp].
func parsePublish(specs []string) ([]vm.Forward, error) {
	var out []vm.Forward
	for _, s := range specs {
		f, err := parseForward(s)
		if err != nil {
			return nil, fmt.Errorf("run: --publish %q: %w (want [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp])", s, err)
		}
		out = append(out, f)
	}
	return out, nil
}

func parseForward(s string) (vm.Forward, error) {
	f := vm.Forward{Proto: "tcp"}
	rest, proto, ok := strings.Cut(s, "/")
	if ok {
		if proto != "tcp" && proto != "udp" {
			return f, fmt.Errorf("protocol %q", proto)
		}
		f.Proto = proto
	}
	parts := strings.Split(rest, ":")
	switch len(parts) {
	case 2:
	case 3:
		f.HostIP, parts = parts[0], parts[1:]
	default:
		return f, errors.New("wrong number of fields")
	}
	var err error
	if f.HostPort, err = port(parts[0]); err != nil {
		return f, err
	}
	f.GuestPort, err = port(parts[1])
	return f, err
}

func port(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return n, nil
}
