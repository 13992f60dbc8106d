package vm

import (
	"bufio"
	"bytes"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
)

func TestIncomingArgs(t *testing.T) {
	cfg := Config{QEMU: "qemu", Arch: "amd64", Accel: AccelTCG, Kernel: "/k", Initrd: "/i", Incoming: "/c/it's/state"}
	argv, err := Argv(cfg, map[string]string{portQMP: "/q", portConsole: "/c"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-incoming", `exec:cat '/c/it'\''s/state'`}
	if got := argv[len(argv)-2:]; !reflect.DeepEqual(got, want) {
		t.Errorf("argv ends %q, want %q", got, want)
	}
}

func TestMachineArgs(t *testing.T) {
	base := Config{QEMU: "qemu", Arch: "amd64", Accel: AccelTCG, Kernel: "/b/vmlinuz", Initrd: "/tmp/run1/initrd.img",
		Disks: []Disk{{Path: "/b/rootfs.squashfs", ReadOnly: true}}, Network: &Network{Forwards: []Forward{{HostPort: 1, GuestPort: 2}}}}
	a, err := MachineArgs(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range a {
		if strings.Contains(s, "/tmp/") || strings.Contains(s, "/b/") || strings.Contains(s, "hostfwd") {
			t.Errorf("MachineArgs holds a path or forward: %q", s)
		}
	}
	same := base
	same.Initrd, same.Kernel, same.Incoming = "/tmp/run2/initrd.img", "/c/vmlinuz", "/s"
	same.Network = &Network{}
	other := base
	other.MemoryMiB = 1024
	for _, tt := range []struct {
		name string
		cfg  Config
		same bool
	}{{"paths, forwards, incoming", same, true}, {"memory", other, false}} {
		b, err := MachineArgs(tt.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Equal(a, b); got != tt.same {
			t.Errorf("%s: equal = %v, want %v", tt.name, got, tt.same)
		}
	}
}

// pipeChannel is a Channel over one end of net.Pipe.
type pipeChannel struct{ net.Conn }

func (p pipeChannel) CloseWrite() error { return nil }

func TestRelayReadyPoint(t *testing.T) {
	host, guest := net.Pipe()
	var msgs bytes.Buffer
	r := &relay{cfg: Config{Messages: &msgs, ReadyPoint: true}, ready: make(chan struct{})}
	gate := r.stdinGate()
	r.sendGo() // before the status port connects: sent once it does
	select {
	case <-gate:
		t.Fatal("stdin flows before the go line was written: a saved VM would hold the run's input")
	default:
	}
	done := make(chan struct{})
	go func() { r.readStatus(pipeChannel{host}); close(done) }()
	in := bufio.NewReader(guest)
	line, err := in.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if _, at, ok := bootcfg.ParseGo(line); !ok || time.Since(at) > time.Minute {
		t.Fatalf("first line to the guest %q: want a go line with the clock", line)
	}
	select {
	case <-r.ready:
	default:
		t.Error("the go line did not mark the guest ready")
	}
	select {
	case <-gate:
	default:
		t.Error("the go line did not open stdin")
	}
	guest.Write([]byte(bootcfg.ReadyPointLine + "\n"))
	select {
	case <-r.readyPointC():
	case <-time.After(5 * time.Second):
		t.Fatal("the ready point line did not close readyPointC")
	}
	guest.Close()
	<-done
	if msgs.Len() != 0 {
		t.Errorf("the ready point line reached the messages: %q", msgs.String())
	}
}
