package vm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
)

// The test binary doubles as a fake QEMU (C2VM_FAKE_QEMU=1): under -accel kvm it does what
// C2VM_FAKE_KVM says (abort as QEMU does on a PVM host, hang as a guest that never boots, or boot);
// a boot connects to c2vm's ports as QEMU would, announces the init, echoes stdin to stdout and
// reports status 7.
func TestMain(m *testing.M) {
	if os.Getenv("C2VM_FAKE_QEMU") == "1" {
		os.Exit(fakeQEMU(os.Args[1:]))
	}
	os.Exit(m.Run())
}

const kvmAssertion = "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed."

func fakeQEMU(args []string) int {
	socks := map[string]string{}
	accel, cid := "", ""
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-accel":
			accel = args[i+1]
		case "-chardev":
			opts := map[string]string{}
			for _, kv := range strings.Split(args[i+1], ",")[1:] {
				k, v, _ := strings.Cut(kv, "=")
				opts[k] = v
			}
			socks[opts["id"]] = opts["path"]
		case "-qmp":
			path, _, _ := strings.Cut(strings.TrimPrefix(args[i+1], "unix:"), ",")
			l, err := net.Listen("unix", path)
			if err != nil {
				panic(err)
			}
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					go serveFakeQMP(c)
				}
			}()
		case "-device":
			if v, ok := strings.CutPrefix(args[i+1], "vhost-vsock-pci,guest-cid="); ok {
				cid = v
			}
		}
	}
	if accel == "kvm" {
		switch os.Getenv("C2VM_FAKE_KVM") {
		case "abort":
			fmt.Fprintln(os.Stderr, kvmAssertion)
			return 134
		case "hang":
			select {}
		}
	}
	if cid != "" { // vsock: the guest listens on each channel's port; fakeVsockDial connects there
		for _, name := range []struct{ id, port string }{
			{"status", bootcfg.StatusPortName}, {"stdout", bootcfg.StdoutPortName}, {"stdin", bootcfg.StdinPortName},
		} {
			port, _ := bootcfg.VsockPort(name.port)
			socks[name.id] = fakeVsockPath(cid, port)
		}
		port, _ := bootcfg.VsockPort(bootcfg.AgentPortName)
		go serveFakeAgent(fakeVsockPath(cid, port)) // the guest listens whether or not the host dials
		return fakeGuest(socks, true)
	}
	if p := socks["agent"]; p != "" { // QEMU listens on the agent socket and c2vm dials
		go serveFakeAgent(p)
	}
	return fakeGuest(socks, false)
}

// fakeVsockPath is where the fake guest listens for a vsock port (C2VM_FAKE_VSOCK is a directory).
func fakeVsockPath(cid string, port uint32) string {
	return fmt.Sprintf("%s/%s-%d.sock", os.Getenv("C2VM_FAKE_VSOCK"), cid, port)
}

// fakeGuest plays the guest init: it connects its channels (or, over vsock, accepts them),
// announces itself, echoes stdin to stdout and reports status 7, or with C2VM_FAKE_WAIT_STOP=1
// waits for a stop request on the status channel and reports 143.
func fakeGuest(socks map[string]string, vsock bool) int {
	open := func(id string) net.Conn {
		if vsock && id != "con" { // the console is a serial port either way
			l, err := net.Listen("unix", socks[id])
			if err != nil {
				panic(err)
			}
			c, err := l.Accept()
			if err != nil {
				panic(err)
			}
			return c
		}
		c, err := net.Dial("unix", socks[id])
		if err != nil {
			panic(err)
		}
		return c
	}
	con := open("con")
	defer con.Close()
	fmt.Fprintf(con, "fake kernel\r\n%s", os.Getenv("C2VM_FAKE_CONSOLE"))
	if os.Getenv("C2VM_FAKE_NO_STATUS") == "1" { // the kernel died before the init
		return 0
	}
	status, stdout := open("status"), open("stdout")
	fmt.Fprintln(status, bootcfg.ReadyLine)
	var in []byte
	if p := socks["stdin"]; p != "" {
		if !vsock { // QEMU listens on the stdin socket and c2vm dials
			l, err := net.Listen("unix", p)
			if err != nil {
				panic(err)
			}
			c, err := l.Accept()
			if err != nil {
				panic(err)
			}
			in, _ = io.ReadAll(c)
		} else if os.Getenv("C2VM_FAKE_STDIN") == "1" {
			in, _ = io.ReadAll(open("stdin"))
		}
	}
	fmt.Fprintf(stdout, "workload output; stdin %q\n", in)
	stdout.Close()
	code := 7
	if os.Getenv("C2VM_FAKE_WAIT_STOP") == "1" {
		sc := bufio.NewScanner(status)
		for sc.Scan() && sc.Text() != bootcfg.StopLine {
		}
		code = 143
	}
	fmt.Fprintf(status, "%s%d\n", bootcfg.StatusLinePrefix, code)
	status.Close()
	return 0
}

// kvmHost is a host tree on which the automatic choice is KVM.
func kvmHost(t *testing.T) Host {
	return fakeHost(t, "amd64", map[string]string{"dev/kvm": "", "sys/module/kvm_intel/": ""})
}

type accelLog struct {
	mu  sync.Mutex
	all []Accel
}

func (l *accelLog) add(a Accel) { l.mu.Lock(); l.all = append(l.all, a); l.mu.Unlock() }

func fakeConfig(t *testing.T, kvm, accel string) (Config, *bytes.Buffer, *accelLog) {
	t.Helper()
	t.Setenv("C2VM_FAKE_QEMU", "1")
	t.Setenv("C2VM_FAKE_KVM", kvm)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out, log := &bytes.Buffer{}, &accelLog{}
	return Config{
		QEMU: exe, Arch: "amd64", Kernel: "/k", Initrd: "/i", Accel: accel, Host: kvmHost(t),
		KVMStartTimeout: time.Second, Stdout: out, Stdin: strings.NewReader("typed ahead"), OnAccel: log.add,
	}, out, log
}

func TestRunFallsBackToTCG(t *testing.T) {
	for _, tt := range []struct{ kvm, reason string }{
		{"abort", "qemu: " + kvmAssertion},
		{"hang", "no sign of the guest init within 1s"},
	} {
		t.Run(tt.kvm, func(t *testing.T) {
			cfg, out, log := fakeConfig(t, tt.kvm, AccelAuto)
			res, err := Run(t.Context(), cfg)
			if err != nil || res.ExitCode != 7 {
				t.Fatalf("Run = %+v, %v; want exit 7 after the fallback", res, err)
			}
			if want := "workload output; stdin \"typed ahead\"\n"; out.String() != want {
				t.Errorf("stdout %q; want %q once, all of stdin reaching the TCG boot", out.String(), want)
			}
			if len(log.all) != 2 || log.all[0].Name != AccelKVM || log.all[1].Name != AccelTCG || log.all[1].Fallback != tt.reason {
				t.Errorf("accelerators %+v; want kvm, then tcg with fallback reason %q", log.all, tt.reason)
			}
		})
	}
}

func TestRunExplicitKVMFails(t *testing.T) {
	cfg, out, log := fakeConfig(t, "abort", AccelKVM)
	_, err := Run(t.Context(), cfg)
	if !errors.Is(err, ErrKVM) || !strings.Contains(err.Error(), "use --accel tcg") || !strings.Contains(err.Error(), "kvm_buf_set_msrs") {
		t.Fatalf("Run error %v; want ErrKVM with QEMU's reason and --accel tcg", err)
	}
	if out.Len() != 0 || len(log.all) != 1 {
		t.Errorf("stdout %q, boots %+v; want nothing written and one boot", out.String(), log.all)
	}
}

func TestRunKVMWorks(t *testing.T) {
	cfg, out, log := fakeConfig(t, "boot", AccelAuto)
	res, err := Run(t.Context(), cfg)
	if err != nil || res.ExitCode != 7 || len(log.all) != 1 || log.all[0].Name != AccelKVM {
		t.Fatalf("Run = %+v, %v, boots %+v; want one KVM boot with exit 7", res, err, log.all)
	}
	if !strings.Contains(out.String(), "workload output") {
		t.Errorf("stdout %q", out.String())
	}
}

// TestRunInitramfsUnpackFails: when the kernel cannot unpack the initrd, the guest may still run
// something (the image's own command, without the run's overrides); run must fail instead.
func TestRunInitramfsUnpackFails(t *testing.T) {
	cfg, out, _ := fakeConfig(t, "boot", AccelTCG)
	t.Setenv("C2VM_FAKE_CONSOLE", "[    1.5] Initramfs unp"+"acking failed: write error\r\nmore\r\n")
	res, err := Run(t.Context(), cfg)
	if !errors.Is(err, ErrNoStatus) || !strings.Contains(err.Error(), "could not unpack the initrd (Initramfs unpacking failed: write error)") || !strings.Contains(err.Error(), "--memory") {
		t.Fatalf("Run = %+v, %v; want the unpack failure and what to do", res, err)
	}
	if res.ExitCode != -1 {
		t.Errorf("exit code %d, want -1 (no status)", res.ExitCode)
	}
	_ = out // the fake guest may have written before the kill; what matters is the failure
}

func TestWatcherAcrossWrites(t *testing.T) {
	n := 0
	w := &watcher{marker: []byte("needle"), found: func() { n++ }}
	for _, chunk := range []string{"hay ne", "e", "dle hay", "stack"} {
		w.Write([]byte(chunk))
	}
	if n != 1 {
		t.Errorf("found %d times, want 1", n)
	}
}
