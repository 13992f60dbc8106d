package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// QMP is a client of QEMU's machine protocol (QMP) on one connection: JSON objects, one per line.
// It negotiates capabilities when it connects, runs one command at a time and hands asynchronous
// events to Events. It is what later features build on: snapshots (migrate to exec:/file:, then
// -incoming), hotplug (device_add, blockdev-add) and balloon or status queries.
type QMP struct {
	conn   net.Conn
	cmdMu  sync.Mutex    // one command in flight: QMP answers in order, without ids needed
	replyc chan qmpReply // the reader's answers to the command in flight
	events chan Event
	done   chan struct{} // closed when the reader ends
	err    error         // why the reader ended; set before done closes

	// Version is QEMU's version from the greeting, "7.2.22" style.
	Version string
}

// Event is an asynchronous QMP event (STOP, RESUME, SHUTDOWN, MIGRATION, ...).
type Event struct {
	Name string          `json:"event"`
	Data json.RawMessage `json:"data,omitempty"`
	At   time.Time       `json:"-"`
}

// QMPError is an error QEMU answered a command with.
type QMPError struct {
	Command string
	Class   string // GenericError, CommandNotFound, DeviceNotActive, ...
	Desc    string
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("qmp %s: %s (%s)", e.Command, e.Desc, e.Class)
}

// Status is the answer to query-status.
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"` // "running", "paused", "prelaunch", "shutdown", "postmigrate", ...
}

type qmpReply struct {
	ret json.RawMessage
	err *QMPError
}

// qmpMessage is any line QEMU writes: a greeting, an answer or an event.
type qmpMessage struct {
	Greeting *struct {
		Version struct {
			Qemu struct{ Major, Minor, Micro int } `json:"qemu"`
		} `json:"version"`
	} `json:"QMP,omitempty"`
	Return    json.RawMessage               `json:"return,omitempty"`
	Error     *struct{ Class, Desc string } `json:"error,omitempty"`
	Event     string                        `json:"event,omitempty"`
	Data      json.RawMessage               `json:"data,omitempty"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp,omitempty"`
}

// maxQMPLine bounds one QMP message (query answers are a few KiB; a device tree tens).
const maxQMPLine = 4 << 20

// qmpEventBuffer is how many events are kept for a reader of Events that lags; later ones are
// dropped rather than stalling the answers to commands.
const qmpEventBuffer = 64

// NewQMP takes a connection to QEMU's QMP socket, reads the greeting and negotiates capabilities
// (qmp_capabilities), so that commands can run. ctx bounds the negotiation.
func NewQMP(ctx context.Context, conn net.Conn) (*QMP, error) {
	q := &QMP{conn: conn, replyc: make(chan qmpReply, 1), events: make(chan Event, qmpEventBuffer), done: make(chan struct{})}
	greeting := make(chan error, 1)
	go q.read(greeting)
	select {
	case err := <-greeting:
		if err != nil {
			conn.Close()
			return nil, err
		}
	case <-ctx.Done():
		conn.Close()
		return nil, fmt.Errorf("qmp: no greeting: %w", ctx.Err())
	}
	if err := q.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// DialQMP connects to a QMP unix socket, retrying until QEMU listens on it or ctx ends, then
// negotiates as NewQMP does.
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return NewQMP(ctx, c)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp: connect %s: %w", path, err)
		case <-time.After(stdinDialInterval):
		}
	}
}

// read reads every message until the connection ends: the greeting first (reported on greeting),
// then answers (to replyc) and events.
func (q *QMP) read(greeting chan<- error) {
	defer close(q.done)
	defer close(q.events)
	sc := bufio.NewScanner(q.conn)
	sc.Buffer(make([]byte, 64*1024), maxQMPLine)
	first := true
	for sc.Scan() {
		var m qmpMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			q.fail(first, greeting, fmt.Errorf("qmp: bad message %.80q: %w", sc.Bytes(), err))
			return
		}
		switch {
		case first:
			first = false
			if m.Greeting == nil {
				q.fail(true, greeting, fmt.Errorf("qmp: no greeting: got %.80q", sc.Bytes()))
				return
			}
			v := m.Greeting.Version.Qemu
			q.Version = fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro)
			greeting <- nil
		case m.Event != "":
			ev := Event{Name: m.Event, Data: m.Data}
			if t := m.Timestamp; t != nil {
				ev.At = time.Unix(t.Seconds, t.Microseconds*1000)
			}
			select {
			case q.events <- ev:
			default: // nobody reads events fast enough: drop rather than block the answers
			}
		case m.Error != nil:
			q.replyc <- qmpReply{err: &QMPError{Class: m.Error.Class, Desc: m.Error.Desc}}
		default:
			q.replyc <- qmpReply{ret: m.Return}
		}
	}
	err := sc.Err()
	if err == nil {
		err = io.EOF
	}
	q.fail(first, greeting, fmt.Errorf("qmp: connection ended: %w", err))
}

func (q *QMP) fail(first bool, greeting chan<- error, err error) {
	q.err = err
	if first {
		greeting <- err
	}
}

// Execute runs one QMP command with args (nil = none) and decodes its return value into reply
// (nil = ignore it). An error answer from QEMU is a *QMPError.
func (q *QMP) Execute(ctx context.Context, command string, args, reply any) error {
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
	}{command, args}
	line, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	q.cmdMu.Lock()
	defer q.cmdMu.Unlock()
	select {
	case <-q.done:
		return fmt.Errorf("qmp %s: %w", command, q.err)
	default:
	}
	if dl, ok := ctx.Deadline(); ok {
		q.conn.SetWriteDeadline(dl)
		defer q.conn.SetWriteDeadline(time.Time{})
	}
	if _, err := q.conn.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	select {
	case r := <-q.replyc:
		if r.err != nil {
			r.err.Command = command
			return r.err
		}
		if reply != nil && len(r.ret) > 0 {
			if err := json.Unmarshal(r.ret, reply); err != nil {
				return fmt.Errorf("qmp %s: decode answer: %w", command, err)
			}
		}
		return nil
	case <-q.done:
		return fmt.Errorf("qmp %s: %w", command, q.err)
	case <-ctx.Done():
		// The answer may still come: the connection is out of step, so it cannot be used again.
		q.conn.Close()
		return fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
}

// Events delivers QEMU's asynchronous events as they arrive; it is closed when the connection
// ends. Events that arrive while the channel is full are dropped.
func (q *QMP) Events() <-chan Event { return q.events }

// Pause stops the guest's CPUs (QMP stop).
func (q *QMP) Pause(ctx context.Context) error { return q.Execute(ctx, "stop", nil, nil) }

// Resume restarts the guest's CPUs (QMP cont).
func (q *QMP) Resume(ctx context.Context) error { return q.Execute(ctx, "cont", nil, nil) }

// QueryStatus returns the VM's run state (QMP query-status).
func (q *QMP) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	err := q.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// Close ends the connection (QEMU keeps running).
func (q *QMP) Close() error {
	err := q.conn.Close()
	<-q.done
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
