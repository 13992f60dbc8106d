package vm

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serveFakeAgent plays the far end of the agent channel in the fake QEMU: it listens at path and
// echoes what each connection sends.
func serveFakeAgent(path string) {
	l, err := net.Listen("unix", path)
	if err != nil {
		panic(err)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() { io.Copy(c, c); c.Close() }()
	}
}

// TestMachineAgent connects the host end of the agent channel, on virtio-serial (QEMU listens) and
// over the vsock seam (the guest listens), and moves bytes both ways while the workload runs.
func TestMachineAgent(t *testing.T) {
	for _, channels := range []string{ChannelsVirtioSerial, ChannelsVsock} {
		t.Run(channels, func(t *testing.T) {
			cfg, _, _ := fakeConfig(t, "boot", AccelTCG)
			t.Setenv("C2VM_FAKE_WAIT_STOP", "1")
			cfg.Agent, cfg.Stdin = true, nil
			if channels == ChannelsVsock {
				t.Setenv("C2VM_FAKE_VSOCK", t.TempDir())
				cfg.Channels, cfg.GuestCID = ChannelsVsock, 42
				fakeVsock(t, func(_ context.Context, cid, port uint32) (Channel, error) {
					c, err := net.Dial("unix", fakeVsockPath(strconv.Itoa(int(cid)), port))
					if err != nil {
						return nil, err
					}
					return c.(*net.UnixConn), nil
				})
			}
			var argv []string
			cfg.OnStart = func(a []string) { argv = a }
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			m, err := Start(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			c, err := m.Agent(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte("ping\x00\xff")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 6)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping\x00\xff" {
				t.Fatalf("echo = %q, %v", buf, err)
			}
			c.Close()
			got := strings.Join(argv, " ")
			if serial := strings.Contains(got, "chardev=agent,name=c2vm.agent"); serial != (channels == ChannelsVirtioSerial) {
				t.Errorf("argv: agent virtserialport %v on %s:\n%s", serial, channels, got)
			}
			m.Stop()
			if res, err := m.Wait(); err != nil || res.ExitCode != 143 {
				t.Fatalf("Wait = %+v, %v", res, err)
			}
			if _, err := m.Agent(ctx); err == nil {
				t.Error("Agent after the VM ended: no error")
			}
		})
	}
}

func TestMachineAgentNotConfigured(t *testing.T) {
	cfg, _, _ := fakeConfig(t, "boot", AccelTCG)
	t.Setenv("C2VM_FAKE_WAIT_STOP", "1")
	m, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Agent(t.Context()); err == nil || !strings.Contains(err.Error(), "without an agent channel") {
		t.Errorf("Agent = %v, want an error saying the VM has no agent channel", err)
	}
	if strings.Contains(strings.Join(mustDryRun(t, cfg), " "), "c2vm.agent") {
		t.Error("a VM without Config.Agent has an agent port")
	}
	cfg.Agent = true
	if got := strings.Join(mustDryRun(t, cfg), " "); !strings.Contains(got, "agent.sock,server=on,wait=off -device virtserialport,bus=vser.0,chardev=agent,name=c2vm.agent") {
		t.Errorf("dry run with Agent: want QEMU listening on the agent port:\n%s", got)
	}
}

func mustDryRun(t *testing.T, cfg Config) []string {
	t.Helper()
	a, err := DryRun(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
