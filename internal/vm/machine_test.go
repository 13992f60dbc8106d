package vm

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
)

// TestMachine drives a Machine through its handle: QMP status, pause and resume while the
// workload runs, then Stop (the guest is asked to stop the workload) and Wait.
func TestMachine(t *testing.T) {
	cfg, out, _ := fakeConfig(t, "boot", AccelTCG)
	t.Setenv("C2VM_FAKE_WAIT_STOP", "1")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	m, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, step := range []struct {
		name string
		do   func(context.Context) error
		want string
	}{
		{"running", func(context.Context) error { return nil }, "running"},
		{"pause", m.Pause, "paused"},
		{"resume", m.Resume, "running"},
	} {
		if err := step.do(ctx); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if s, err := m.QueryStatus(ctx); err != nil || s.Status != step.want {
			t.Fatalf("%s: QueryStatus = %+v, %v; want %s", step.name, s, err, step.want)
		}
	}
	m.Stop()
	res, err := m.Wait()
	if err != nil || res.ExitCode != 143 {
		t.Fatalf("Wait = %+v, %v; want 143 from the stopped workload", res, err)
	}
	if !strings.Contains(out.String(), "workload output") {
		t.Errorf("stdout %q", out.String())
	}
	if _, err := m.QueryStatus(ctx); !errors.Is(err, errEnded) {
		t.Errorf("QueryStatus after the end = %v, want %v", err, errEnded)
	}
}

func TestMachineKill(t *testing.T) {
	cfg, _, _ := fakeConfig(t, "hang", AccelAuto)
	cfg.KVMStartTimeout = time.Hour
	m, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.QueryStatus(t.Context()); err != nil { // QEMU is up
		t.Fatal(err)
	}
	m.Kill()
	res, err := m.Wait()
	if !errors.Is(err, ErrKilled) || res.ExitCode != -1 {
		t.Errorf("Wait after Kill = %+v, %v; want ErrKilled and no fallback to TCG", res, err)
	}
	if err := m.Close(); err != nil {
		t.Error(err)
	}
}

// TestStopCarriedAcrossFallback (issue 21): a stop requested while the KVM boot fails reaches the
// TCG boot that runs the workload, which stops it instead of running on.
func TestStopCarriedAcrossFallback(t *testing.T) {
	for _, kvm := range []string{"hang", "abort"} {
		t.Run(kvm, func(t *testing.T) {
			cfg, _, log := fakeConfig(t, kvm, AccelAuto)
			t.Setenv("C2VM_FAKE_WAIT_STOP", "1")
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			stop := make(chan struct{}, 1)
			cfg.Stop = stop
			cfg.OnAccel = func(a Accel) {
				log.add(a)
				if a.Name == AccelKVM {
					stop <- struct{}{} // Ctrl-C during the KVM attempt
				}
			}
			res, err := Run(ctx, cfg)
			if err != nil || res.ExitCode != 143 {
				t.Fatalf("Run = %+v, %v; want 143: the stop reaching the TCG boot", res, err)
			}
			if len(log.all) != 2 || log.all[1].Name != AccelTCG {
				t.Errorf("boots %+v; want kvm, then tcg", log.all)
			}
		})
	}
}

// TestRunVsockChannels runs the relay over the vsock seam: the fake guest listens on each
// channel's port as the init does, and the fake dialer reaches it where /dev/vhost-vsock would.
func TestRunVsockChannels(t *testing.T) {
	cfg, out, _ := fakeConfig(t, "boot", AccelTCG)
	t.Setenv("C2VM_FAKE_VSOCK", t.TempDir())
	t.Setenv("C2VM_FAKE_STDIN", "1")
	cfg.Channels, cfg.GuestCID = ChannelsVsock, 42
	var mu sync.Mutex
	dialed := map[uint32]bool{}
	fakeVsock(t, func(_ context.Context, cid, port uint32) (Channel, error) {
		c, err := net.Dial("unix", fakeVsockPath(strconv.Itoa(int(cid)), port))
		if err != nil {
			return nil, err
		}
		mu.Lock()
		dialed[port] = true
		mu.Unlock()
		return c.(*net.UnixConn), nil
	})
	var argv []string
	cfg.OnStart = func(a []string) { argv = a }
	res, err := Run(t.Context(), cfg)
	if err != nil || res.ExitCode != 7 {
		t.Fatalf("Run = %+v, %v; want exit 7 over vsock", res, err)
	}
	if want := "workload output; stdin \"typed ahead\"\n"; out.String() != want {
		t.Errorf("stdout %q, want %q", out.String(), want)
	}
	got := strings.Join(argv, " ")
	if !strings.Contains(got, "vhost-vsock-pci,guest-cid=42") || !strings.Contains(got, "c2vm.channels=vsock") || strings.Contains(got, "virtserialport") {
		t.Errorf("argv: want a vsock device, the channels on the command line and no serial channels:\n%s", got)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, name := range []string{bootcfg.StatusPortName, bootcfg.StdoutPortName, bootcfg.StdinPortName} {
		if p, _ := bootcfg.VsockPort(name); !dialed[p] {
			t.Errorf("%s (vsock port %d) not connected; connected %v", name, p, dialed)
		}
	}
}

func TestVsockNeedsVhost(t *testing.T) {
	cfg, _, _ := fakeConfig(t, "boot", AccelTCG)
	cfg.Channels = ChannelsVsock
	old := vhostVsock
	vhostVsock = func() error { return errNoVsock }
	t.Cleanup(func() { vhostVsock = old })
	if _, err := Run(t.Context(), cfg); !errors.Is(err, errNoVsock) {
		t.Errorf("Run = %v, want %v", err, errNoVsock)
	}
}

func fakeVsock(t *testing.T, dial func(context.Context, uint32, uint32) (Channel, error)) {
	t.Helper()
	oldDial, oldVhost := vsockDialer, vhostVsock
	vsockDialer, vhostVsock = dial, func() error { return nil }
	t.Cleanup(func() { vsockDialer, vhostVsock = oldDial, oldVhost })
}
