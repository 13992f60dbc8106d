package guestinit

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
	"golang.org/x/sys/unix"
)

// fakeVsockAccept replaces AF_VSOCK: each accept returns one end of a socket pair and keeps the
// other (the host's end) in hosts, by port.
func fakeVsockAccept(t *testing.T, fail error) map[uint32]*os.File {
	t.Helper()
	hosts := map[uint32]*os.File{}
	old := vsockAccept
	vsockAccept = func(port uint32, timeout time.Duration) (*os.File, error) {
		if timeout != channelWait {
			t.Errorf("accept timeout %v, want %v", timeout, channelWait)
		}
		if fail != nil {
			return nil, fail
		}
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		hosts[port] = os.NewFile(uintptr(fds[1]), "host")
		return os.NewFile(uintptr(fds[0]), "guest"), nil
	}
	t.Cleanup(func() {
		vsockAccept = old
		for _, f := range hosts {
			f.Close()
		}
	})
	return hosts
}

func TestOpenChannel(t *testing.T) {
	status, _ := bootcfg.VsockPort(bootcfg.StdoutPortName)
	refused := errors.New("the host did not connect")
	for _, tt := range []struct {
		name          string
		port, cmdline string // a virtio port for the channel; the kernel command line
		fallback      string
		acceptErr     error
		want          string // the file opened: a path, "vsock", or "error: ..."
	}{
		{"virtio port", "/dev/vport1p2", "", "/dev/console", nil, "/dev/vport1p2"},
		{"port wins over vsock", "/dev/vport1p2", "c2vm.channels=vsock", "/dev/console", nil, "/dev/vport1p2"},
		{"vsock", "", "console=ttyS0 c2vm.channels=vsock quiet", "/dev/console", nil, "vsock"},
		{"neither", "", "console=ttyS0", "/dev/console", nil, "/dev/console"},
		{"nothing to open", "", "", "", nil, "error: channel c2vm.stdout: file does not exist"},
		{"host never dials", "", "c2vm.channels=vsock", "/dev/console", refused, "error: channel c2vm.stdout: the host did not connect"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.file(t, "/proc/cmdline", tt.cmdline+"\n")
			f.file(t, "/dev/vport1p2", "")
			f.file(t, "/dev/console", "")
			hosts := fakeVsockAccept(t, tt.acceptErr)
			st := &State{Sys: f, Clock: newClock(), Ports: map[string]string{}}
			if tt.port != "" {
				st.Ports[bootcfg.StdoutPortName] = tt.port
			}
			file, err := openChannel(st, bootcfg.StdoutPortName, tt.fallback, os.O_WRONLY)
			got := ""
			switch {
			case err != nil:
				got = "error: " + err.Error()
			case hosts[status] != nil:
				got = "vsock"
				file.Close()
			default:
				got = strings.TrimPrefix(file.Name(), f.root)
				file.Close()
			}
			if got != tt.want {
				t.Errorf("openChannel opened %q, want %q", got, tt.want)
			}
		})
	}
}

// TestStepPortsVsock: with the channels on vsock and no virtio console, the init announces itself
// on the vsock status channel, and stop requests come back on it.
func TestStepPortsVsock(t *testing.T) {
	f := newFake(t)
	f.file(t, "/proc/cmdline", "console=ttyS0 "+bootcfg.FormatChannels(bootcfg.ChannelsVsock))
	hosts := fakeVsockAccept(t, nil)
	st := &State{Sys: f, Clock: newClock()}
	if err := stepPorts(t.Context(), st); err != nil {
		t.Fatal(err)
	}
	port, _ := bootcfg.VsockPort(bootcfg.StatusPortName)
	host := hosts[port]
	if host == nil {
		t.Fatalf("no vsock status channel; accepted %v", hosts)
	}
	line, err := bufio.NewReader(host).ReadString('\n')
	if err != nil || line != bootcfg.ReadyLine+"\n" {
		t.Errorf("host read %q, %v; want the ready line", line, err)
	}
	io.WriteString(host, bootcfg.StopLine+"\n")
	buf := make([]byte, len(bootcfg.StopLine)+1)
	if _, err := io.ReadFull(st.statusPort, buf); err != nil || string(buf) != bootcfg.StopLine+"\n" {
		t.Errorf("guest read %q, %v; want the stop request", buf, err)
	}
}
