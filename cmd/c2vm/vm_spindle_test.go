package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/c2vm/c2vm/agent/shuttle"
	"github.com/c2vm/c2vm/internal/export"
)

// TestVMSpindleAgent plays Tangled spindle's host side (../shared/SPINDLE.md's sequence) against
// an exported busybox image booted with spindle's QEMU command line, over the virtio-serial port
// c2vm.shuttle in place of the vsock device these hosts lack: QMP reports running, Hello comes
// first, Init, steps run in the image's container as spindle-workflow in /workspace/repo (on the
// spec's ext4 volume) with output on both streams and their statuses, a step killed by its
// timeout, a command that cannot start, CacheDrain, then Poweroff answered and QEMU gone within
// spindle's 10 s.
func TestVMSpindleAgent(t *testing.T) {
	requireVM(t)
	dir := t.TempDir()
	busyboxImage(t, filepath.Join(dir, "oci"), ocispec.ImageConfig{Cmd: []string{"sh"}})
	b := filepath.Join(dir, "bundle")
	if code, _, stderr := c2vm(t, "", "convert", "--quiet", "-o", b, "oci:"+filepath.Join(dir, "oci")+":test"); code != 0 {
		t.Fatalf("convert: %s", stderr)
	}
	out := exportTo(t, b, export.Spindle, "--tcg", "--workspace-size", "32")
	var spec export.SpindleSpec
	readJSON(t, filepath.Join(out, "spec.json"), &spec)

	work := t.TempDir()
	argv := spindleArgv(t, filepath.Join(out, "spec.json"), work)
	sock := filepath.Join(work, "shuttle.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	argv = append(argv, "-chardev", "socket,id=shuttle,path="+sock, "-device", "virtserialport,chardev=shuttle,name=c2vm.shuttle")
	qmpSock := filepath.Join(work, "qmp.sock")
	ql, err := net.Listen("unix", qmpSock)
	if err != nil {
		t.Fatal(err)
	}
	qf, err := ql.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.ExtraFiles = []*os.File{qf}
	var qemuOut strings.Builder
	cmd.Stdout, cmd.Stderr = &qemuOut, &qemuOut
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	qf.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	fail := func(format string, args ...any) {
		t.Helper()
		serial, _ := os.ReadFile(filepath.Join(work, "serial.log"))
		t.Fatalf("%s\nqemu: %s\nserial log tail: %s\n%s", fmt.Sprintf(format, args...), qemuOut.String(), tail(string(serial), 3000), strings.Join(argv, " "))
	}

	if st := qmpStatus(t, qmpSock); st != "running" {
		fail("QMP status %q, want running", st)
	}
	l.(*net.UnixListener).SetDeadline(time.Now().Add(30 * time.Second))
	conn, err := l.Accept()
	if err != nil {
		fail("QEMU did not connect the shuttle port: %v", err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	w := shuttle.NewWriter(conn)
	read := func(within time.Duration) *shuttle.Message {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(within))
		m, err := shuttle.ReadMessage(r)
		if err != nil {
			fail("read: %v", err)
		}
		return m
	}
	// Spindle: the connection within 2 min of start, then Hello within 30 s. Over the port the
	// connection is there from the start, so the whole boot counts.
	hello := read(2 * time.Minute)
	if hello.Hello == nil || hello.Hello.ProtocolVersion != shuttle.ProtocolVersion {
		fail("first message %+v, want Hello", hello)
	}
	t.Logf("Hello %v after QEMU started (agent %q, boot %q)", time.Since(start).Round(time.Millisecond), hello.Hello.AgentVersion, hello.Hello.BootID)
	send := func(m *shuttle.Message) {
		t.Helper()
		if err := w.Write(m); err != nil {
			fail("write: %v", err)
		}
	}
	send(&shuttle.Message{ID: "init", Init: &shuttle.Init{JobID: "job-1", DNSProxyPort: 1053}})

	env := []string{"HOME=/workspace", "LOGNAME=spindle-workflow", "USER=spindle-workflow", "PATH=/run/current-system/sw/bin"}
	step := func(id string, timeout uint32, argv ...string) (stdout, stderr string, exit *shuttle.ExecExit) {
		t.Helper()
		send(&shuttle.Message{ID: id, ExecStart: &shuttle.ExecStart{Argv: argv, Env: env, Cwd: "/workspace/repo", User: "spindle-workflow", TimeoutSeconds: timeout}})
		for {
			m := read(2 * time.Minute)
			switch {
			case m.ID != id:
				fail("message %+v during step %s", m, id)
			case m.ExecStdout != nil:
				stdout += m.ExecStdout.Data
			case m.ExecStderr != nil:
				stderr += m.ExecStderr.Data
			case m.ExecExit != nil:
				return stdout, stderr, m.ExecExit
			default:
				fail("message %+v during step %s", m, id)
			}
		}
	}
	sh := func(script string) []string { return []string{spec.Shell, "-lc", script} }

	stdout, stderr, exit := step("wf-0", 120, sh("echo out1; echo err1 >&2; echo out2; echo err2 >&2; pwd; id -un; echo $HOME; "+
		"echo x | wc -l; touch f && ls /workspace/repo; grep -c ' /workspace ext4 ' /proc/mounts; exit 3")...)
	if want := "out1\nout2\n/workspace/repo\nspindle-workflow\n/workspace\n1\nf\n1\n"; stdout != want || stderr != "err1\nerr2\n" {
		t.Errorf("step wf-0: stdout %q (want %q), stderr %q", stdout, want, stderr)
	}
	if *exit != (shuttle.ExecExit{ExitCode: 3}) {
		t.Errorf("step wf-0: %+v, want status 3", exit)
	}

	begin := time.Now()
	stdout, _, exit = step("wf-1", 3, sh("echo started; sleep 100; echo not reached")...)
	if stdout != "started\n" || exit.ExitCode != 137 || !exit.TimedOut || exit.Error != "" {
		t.Errorf("step wf-1 (timeout 3 s): stdout %q, %+v; want 137 timed out", stdout, exit)
	}
	t.Logf("the 3 s step ended after %v", time.Since(begin).Round(time.Millisecond))

	_, _, exit = step("wf-2", 60, "nope-not-here")
	if exit.ExitCode != 127 || exit.Error == "" || exit.TimedOut {
		t.Errorf("step wf-2 (no such command): %+v, want 127 and an error", exit)
	}
	t.Logf("not found: %q", exit.Error)

	send(&shuttle.Message{ID: "drain", CacheDrain: &shuttle.CacheDrain{TimeoutSeconds: 300}})
	if m := read(30 * time.Second); m.ID != "drain" || m.CacheDrainResult == nil {
		fail("CacheDrain answered %+v", m)
	}
	send(&shuttle.Message{ID: "poweroff", Poweroff: &shuttle.Poweroff{}})
	off := time.Now()
	if m := read(10 * time.Second); m.ID != "poweroff" || m.PoweroffResult == nil || m.PoweroffResult.Error != "" {
		fail("Poweroff answered %+v", m)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			fail("qemu: %v", err)
		}
		t.Logf("QEMU gone %v after Poweroff", time.Since(off).Round(time.Millisecond))
	case <-time.After(10*time.Second - time.Since(off)):
		fail("QEMU still running 10 s after Poweroff")
	}
}

// qmpStatus connects to QEMU's QMP socket as spindle does and returns query-status's status,
// waiting up to spindle's 10 s for the socket to answer.
func qmpStatus(t *testing.T, sock string) string {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 10*time.Second)
	if err != nil {
		t.Fatalf("qmp: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	dec := json.NewDecoder(c)
	var greeting map[string]any
	if err := dec.Decode(&greeting); err != nil {
		t.Fatalf("qmp greeting: %v", err)
	}
	for _, cmd := range []string{`{"execute":"qmp_capabilities"}`, `{"execute":"query-status"}`} {
		if _, err := c.Write([]byte(cmd + "\n")); err != nil {
			t.Fatalf("qmp: %v", err)
		}
		for {
			var resp struct {
				Return json.RawMessage `json:"return"`
				Error  any             `json:"error"`
			}
			if err := dec.Decode(&resp); err != nil {
				t.Fatalf("qmp %s: %v", cmd, err)
			}
			if resp.Error != nil {
				t.Fatalf("qmp %s: %v", cmd, resp.Error)
			}
			if resp.Return == nil {
				continue // an event
			}
			var st struct {
				Status string `json:"status"`
			}
			json.Unmarshal(resp.Return, &st)
			if st.Status != "" {
				return st.Status
			}
			break
		}
	}
	return ""
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
