package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/c2vm/c2vm/agent"
	"github.com/c2vm/c2vm/internal/fileutil"
	"github.com/c2vm/c2vm/internal/supervise"
)

func execCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run a command in a detached VM's workload container (its namespaces, cgroup, user and environment)",
		ArgsUsage: "NAME|ID COMMAND [ARG...]",
		Flags: append(terminalFlags(),
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "run as name, uid, uid:gid or user:group", DefaultText: "the workload's"},
			&cli.StringFlag{Name: "workdir", Aliases: []string{"w"}, Usage: "working directory", DefaultText: "the workload's"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set KEY=VAL, or KEY to take it from the host environment"},
			&cli.StringSliceFlag{Name: "env-file", Usage: "read KEY=VAL lines from a file"},
		),
		UseShortOptionHandling: true,
		Action:                 runExec,
	}
}

// runExec starts the command through the VM's control socket, relays its stdio (stdout and
// stderr apart; one terminal with -t) and exits with its status, as docker exec does.
func runExec(c *cli.Context) error {
	if c.NArg() < 2 {
		return usageError("exec: want a NAME or ID and a COMMAND")
	}
	st := stateStore()
	r, err := st.Get(c.Args().First())
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	if !r.Running() {
		return fmt.Errorf("exec: VM %s is not running", r.Name)
	}
	env, err := runEnv(c.StringSlice("env-file"), c.StringSlice("env"))
	if err != nil {
		return err
	}
	env = withValues(env)
	svc, cl, err := supervise.DialControl(st.ControlPath(r.ID))
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	defer cl.Close()
	var b [8]byte
	rand.Read(b[:])
	req := &agent.ExecRequest{
		Id: "exec-" + hex.EncodeToString(b[:]), Args: c.Args().Tail(), Env: env,
		Cwd: c.String("workdir"), User: c.String("user"), Tty: c.Bool("tty"), Stdin: c.Bool("interactive"),
	}
	in, _ := c.App.Reader.(*os.File)
	termIn := in != nil && isTerminal(in)
	if req.Tty && termIn {
		if ws, ok := windowSize(in); ok {
			req.Rows, req.Cols = uint32(ws.Rows), uint32(ws.Cols)
		}
	}
	if req.Tty && req.Stdin && termIn {
		var state *term.State
		if err := fileutil.Control(in, func(fd int) (err error) { state, err = term.MakeRaw(fd); return err }); err != nil {
			return fmt.Errorf("exec: -t: cannot put the terminal in raw mode: %w", err)
		}
		defer fileutil.Control(in, func(fd int) error { return term.Restore(fd, state) })
	}
	ctx := c.Context
	if _, err := svc.Exec(ctx, req); err != nil {
		// As docker exec: a process that cannot be started is status 126.
		fmt.Fprintln(c.App.ErrWriter, "c2vm: exec: "+errorText(err))
		return exitError{code: ExitCannotRun}
	}
	if req.Tty && termIn {
		stop := followSize(c, svc, req.Id, in)
		defer stop()
	}
	var wg sync.WaitGroup
	var copyErr error
	var mu sync.Mutex
	copyOut := func(s agent.Stream, w interface{ Write([]byte) (int, error) }) {
		defer wg.Done()
		if err := agent.Copy(ctx, svc, req.Id, s, w); err != nil {
			mu.Lock()
			copyErr = err
			mu.Unlock()
		}
	}
	wg.Add(1)
	go copyOut(agent.Stream_STDOUT, c.App.Writer)
	if !req.Tty {
		wg.Add(1)
		go copyOut(agent.Stream_STDERR, c.App.ErrWriter)
	}
	if req.Stdin {
		go agent.Feed(ctx, svc, req.Id, c.App.Reader) // not waited for: the host's stdin may never end
	}
	wg.Wait()
	res, err := svc.Wait(ctx, &agent.WaitRequest{Id: req.Id})
	if err != nil {
		return fmt.Errorf("exec: %s", errorText(err))
	}
	if copyErr != nil {
		return fmt.Errorf("exec: %w", copyErr)
	}
	return exitError{code: int(res.ExitStatus)}
}

// followSize sends the terminal's size to the process after each SIGWINCH until stop is called.
func followSize(c *cli.Context, svc agent.AgentService, id string, f *os.File) (stop func()) {
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-winch:
				if ws, ok := windowSize(f); ok {
					svc.Resize(c.Context, &agent.ResizeRequest{Id: id, Rows: uint32(ws.Rows), Cols: uint32(ws.Cols)})
				}
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(winch); close(done) }
}

// withValues drops the -e KEY entries the host had no value for: an exec adds to the container's
// environment and has nothing to unset.
func withValues(env []string) []string {
	var out []string
	for _, e := range env {
		if strings.Contains(e, "=") {
			out = append(out, e)
		}
	}
	return out
}

// errorText is an agent error without ttrpc's status wrapping ("rpc error: code = Unknown desc =").
func errorText(err error) string {
	s := err.Error()
	if _, desc, ok := strings.Cut(s, "desc = "); ok {
		return desc
	}
	return s
}
