package agent_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containerd/ttrpc"

	"github.com/c2vm/c2vm/agent"
)

// echoAgent is a one-process agent: what is written to stdin comes back on stdout, and stderr
// gets "bye" when stdin closes; the process then exits 3.
type echoAgent struct {
	agent.AgentService // methods the test does not call
	mu                 sync.Mutex
	pr                 *io.PipeReader
	pw                 *io.PipeWriter
	errDone            bool
	exited             chan struct{}
}

func (e *echoAgent) Exec(_ context.Context, r *agent.ExecRequest) (*agent.ExecResponse, error) {
	e.pr, e.pw = io.Pipe()
	e.exited = make(chan struct{})
	return &agent.ExecResponse{Pid: 42}, nil
}

func (e *echoAgent) Read(_ context.Context, r *agent.ReadRequest) (*agent.ReadResponse, error) {
	if r.Stream == agent.Stream_STDERR {
		<-e.exited
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.errDone {
			return &agent.ReadResponse{Eof: true}, nil
		}
		e.errDone = true
		return &agent.ReadResponse{Data: []byte("bye\n")}, nil
	}
	buf := make([]byte, r.Max)
	n, err := e.pr.Read(buf)
	if errors.Is(err, io.EOF) {
		return &agent.ReadResponse{Eof: true}, nil
	}
	return &agent.ReadResponse{Data: buf[:n]}, err
}

func (e *echoAgent) Write(_ context.Context, r *agent.WriteRequest) (*agent.WriteResponse, error) {
	_, err := e.pw.Write(r.Data)
	return &agent.WriteResponse{}, err
}

func (e *echoAgent) CloseStdin(context.Context, *agent.CloseStdinRequest) (*agent.CloseStdinResponse, error) {
	e.pw.Close()
	close(e.exited)
	return &agent.CloseStdinResponse{}, nil
}

func (e *echoAgent) Wait(context.Context, *agent.WaitRequest) (*agent.WaitResponse, error) {
	<-e.exited
	return &agent.WaitResponse{ExitStatus: 3}, nil
}

// serve runs svc on a ttrpc server over a unix socket and returns a client of it.
func serve(t *testing.T, svc agent.AgentService) agent.AgentService {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	agent.RegisterAgentService(srv, svc)
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	conn, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := ttrpc.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	return agent.NewAgentClient(c)
}

// TestStdioRoundTrip moves 8 MiB of random bytes through Feed and Copy concurrently (the pace is
// the reader's: the echo blocks until stdout is read) and checks them, the separate stderr and the
// status.
func TestStdioRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := serve(t, &echoAgent{})
	if _, err := c.Exec(ctx, &agent.ExecRequest{Id: "e1", Args: []string{"cat"}, Stdin: true}); err != nil {
		t.Fatal(err)
	}
	in := make([]byte, 8<<20)
	rand.Read(in)
	var out, errOut bytes.Buffer
	errc := make(chan error, 3)
	go func() { errc <- agent.Feed(ctx, c, "e1", bytes.NewReader(in)) }()
	go func() { errc <- agent.Copy(ctx, c, "e1", agent.Stream_STDOUT, &out) }()
	go func() { errc <- agent.Copy(ctx, c, "e1", agent.Stream_STDERR, &errOut) }()
	for range 3 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Wait(ctx, &agent.WaitRequest{Id: "e1"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), in) {
		t.Errorf("stdout: %d bytes, want the %d written", out.Len(), len(in))
	}
	if errOut.String() != "bye\n" || w.ExitStatus != 3 {
		t.Errorf("stderr %q, status %d; want \"bye\\n\", 3", errOut.String(), w.ExitStatus)
	}
}

// TestCopyWriterError: a failing host writer ends Copy with that error, naming the stream.
func TestCopyWriterError(t *testing.T) {
	ctx := context.Background()
	a := &echoAgent{}
	c := serve(t, a)
	if _, err := c.Exec(ctx, &agent.ExecRequest{Id: "e1", Args: []string{"cat"}}); err != nil {
		t.Fatal(err)
	}
	go c.Write(ctx, &agent.WriteRequest{Id: "e1", Data: []byte("x")})
	err := agent.Copy(ctx, c, "e1", agent.Stream_STDOUT, failWriter{})
	if err == nil || !errors.Is(err, errFull) {
		t.Fatalf("Copy = %v, want the writer's error", err)
	}
}

var errFull = errors.New("disk full")

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errFull }
