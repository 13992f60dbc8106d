package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// qmpGreeting is QEMU 7.2's greeting, as it writes it.
const qmpGreeting = `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18"}, "capabilities": ["oob"]}}`

// serveFakeQMP plays QEMU's side of QMP on c, with QEMU's real lines: the greeting, then answers
// to qmp_capabilities, query-status, stop and cont (with their STOP and RESUME events before the
// answer, as QEMU sends them) and CommandNotFound for anything else. Commands before
// qmp_capabilities are refused as QEMU refuses them.
func serveFakeQMP(c net.Conn) {
	defer c.Close()
	fmt.Fprintf(c, "%s\r\n", qmpGreeting)
	running, negotiated := true, false
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		var req struct {
			Execute string `json:"execute"`
		}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			fmt.Fprintf(c, `{"error": {"class": "GenericError", "desc": "JSON parse error, %v"}}`+"\r\n", err)
			continue
		}
		event := func(name string) {
			fmt.Fprintf(c, `{"timestamp": {"seconds": 1764665000, "microseconds": 123456}, "event": "%s"}`+"\r\n", name)
		}
		switch {
		case req.Execute == "qmp_capabilities":
			negotiated = true
			fmt.Fprint(c, `{"return": {}}`+"\r\n")
		case !negotiated:
			fmt.Fprintf(c, `{"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}`+"\r\n")
		case req.Execute == "query-status":
			status := "running"
			if !running {
				status = "paused"
			}
			fmt.Fprintf(c, `{"return": {"status": "%s", "singlestep": false, "running": %v}}`+"\r\n", status, running)
		case req.Execute == "stop":
			running = false
			event("STOP")
			fmt.Fprint(c, `{"return": {}}`+"\r\n")
		case req.Execute == "cont":
			running = true
			event("RESUME")
			fmt.Fprint(c, `{"return": {}}`+"\r\n")
		case req.Execute == "quit":
			fmt.Fprint(c, `{"return": {}}`+"\r\n")
			event("SHUTDOWN")
			return
		default:
			fmt.Fprintf(c, `{"error": {"class": "CommandNotFound", "desc": "The command %s has not been found"}}`+"\r\n", req.Execute)
		}
	}
}

// fakeQMPServer listens on a unix socket and serves each connection with serve.
func fakeQMPServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return path
}

func TestQMP(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	q, err := DialQMP(ctx, fakeQMPServer(t, serveFakeQMP))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.Version != "7.2.22" {
		t.Errorf("Version %q, want 7.2.22 from the greeting", q.Version)
	}
	for _, step := range []struct {
		name  string
		do    func() error
		want  Status
		event string
	}{
		{"query", func() error { return nil }, Status{Running: true, Status: "running"}, ""},
		{"pause", func() error { return q.Pause(ctx) }, Status{Running: false, Status: "paused"}, "STOP"},
		{"resume", func() error { return q.Resume(ctx) }, Status{Running: true, Status: "running"}, "RESUME"},
	} {
		t.Run(step.name, func(t *testing.T) {
			if err := step.do(); err != nil {
				t.Fatal(err)
			}
			if step.event != "" {
				select {
				case ev := <-q.Events():
					if ev.Name != step.event || ev.At.Unix() != 1764665000 {
						t.Errorf("event %+v, want %s at 1764665000", ev, step.event)
					}
				case <-ctx.Done():
					t.Fatalf("no %s event", step.event)
				}
			}
			s, err := q.QueryStatus(ctx)
			if err != nil || s != step.want {
				t.Errorf("QueryStatus = %+v, %v; want %+v", s, err, step.want)
			}
		})
	}
	var qe *QMPError
	err = q.Execute(ctx, "nonesuch", map[string]any{"x": 1}, nil)
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" || qe.Command != "nonesuch" {
		t.Errorf("Execute(nonesuch) = %v; want a CommandNotFound QMPError", err)
	}
	if err := q.Execute(ctx, "quit", nil, nil); err != nil {
		t.Fatal(err)
	}
	<-q.done // QEMU hung up after SHUTDOWN
	if err := q.Execute(ctx, "query-status", nil, nil); err == nil || !strings.Contains(err.Error(), "connection ended") {
		t.Errorf("Execute after QEMU hung up = %v; want connection ended", err)
	}
}

func TestQMPBadPeer(t *testing.T) {
	for _, tt := range []struct {
		name  string
		serve func(net.Conn)
		want  string
	}{
		{"not QMP", func(c net.Conn) { io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n"); c.Close() }, "bad message"},
		{"no greeting", func(c net.Conn) { io.WriteString(c, `{"return": {}}`+"\r\n"); c.Close() }, "no greeting"},
		{"hangs up", func(c net.Conn) { c.Close() }, "connection ended"},
		{"refuses capabilities", func(c net.Conn) {
			fmt.Fprintf(c, "%s\r\n", qmpGreeting)
			bufio.NewReader(c).ReadString('\n')
			io.WriteString(c, `{"error": {"class": "GenericError", "desc": "Capabilities negotiation is already complete, command ignored"}}`+"\r\n")
		}, "qmp qmp_capabilities: Capabilities negotiation is already complete"},
		{"silent", func(net.Conn) { <-t.Context().Done() }, "no greeting: context deadline exceeded"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			q, err := DialQMP(ctx, fakeQMPServer(t, tt.serve))
			if err == nil {
				q.Close()
				t.Fatal("DialQMP: no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DialQMP error %q, want %q", err, tt.want)
			}
		})
	}
}

// TestQMPCommandTimeout: a command QEMU never answers ends with ctx, and the connection is not
// used again (a late answer would be taken for the next command's).
func TestQMPCommandTimeout(t *testing.T) {
	path := fakeQMPServer(t, func(c net.Conn) {
		fmt.Fprintf(c, "%s\r\n", qmpGreeting)
		r := bufio.NewReader(c)
		r.ReadString('\n')
		io.WriteString(c, `{"return": {}}`+"\r\n")
		r.ReadString('\n') // never answered
		<-t.Context().Done()
	})
	q, err := DialQMP(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := q.QueryStatus(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("QueryStatus = %v, want the deadline", err)
	}
	if _, err := q.QueryStatus(t.Context()); err == nil {
		t.Error("QueryStatus after a timed-out command: no error")
	}
}
