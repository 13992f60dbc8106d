package guestinit

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
	"golang.org/x/sys/unix"
)

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		ws   unix.WaitStatus
		want int
	}{
		{"exit 0", 0, 0},
		{"exit 3", 3 << 8, 3},
		{"exit 255", 255 << 8, 255},
		{"signal 9", unix.WaitStatus(unix.SIGKILL), 137},
		{"signal 15", unix.WaitStatus(unix.SIGTERM), 143},
		{"signal 9 with core", unix.WaitStatus(unix.SIGKILL) | 0x80, 137},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ExitCode(tc.ws); got != tc.want {
				t.Errorf("ExitCode(%#x) = %d, want %d", uint32(tc.ws), got, tc.want)
			}
		})
	}
}

func TestStatusLine(t *testing.T) {
	for status, want := range map[int]string{0: "c2vm-exit-status: 0\n", 125: "c2vm-exit-status: 125\n", 137: "c2vm-exit-status: 137\n"} {
		if got := bootcfg.FormatStatus(status); got != want || !strings.HasPrefix(got, bootcfg.StatusLinePrefix) {
			t.Errorf("FormatStatus(%d) = %q, want %q", status, got, want)
		}
	}
}

func TestFailureLineIsOneLine(t *testing.T) {
	got := failureLine("spec", errorString("a\nb"))
	if got != "c2vm-init: spec: a; b\n" {
		t.Errorf("failureLine = %q", got)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestFindPorts(t *testing.T) {
	dir := t.TempDir()
	for entry, name := range map[string]string{
		"vport1p1": "c2vm.status\n", "vport1p2": "c2vm.stdout", "vport1p3": "", "vport1p4": "c2vm.stdout", "hvc0": "",
	} {
		if err := os.MkdirAll(filepath.Join(dir, entry), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, entry, "name"), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ports, complete, err := FindPorts(&Linux{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"c2vm.status": "/dev/vport1p1", "c2vm.stdout": "/dev/vport1p2"}
	if !reflect.DeepEqual(ports, want) || complete {
		t.Errorf("FindPorts = %v, complete %v; want %v, incomplete", ports, complete, want)
	}
	if _, _, err := FindPorts(&Linux{}, filepath.Join(dir, "missing")); err == nil {
		t.Error("FindPorts of a missing dir: no error")
	}
}

func TestPatchSpec(t *testing.T) {
	in := []byte(`{"ociVersion":"1.2.0","zzUnknown":{"keep":[1,2]},"root":{"path":"/x","readonly":true},
"mounts":[{"destination":"/etc/hosts","type":"bind","source":"/old"},{"destination":"/tmp","type":"tmpfs","source":"tmpfs"}],
"linux":{"namespaces":[{"type":"network"},{"type":"uts"}],"maskedPaths":["/proc/kcore"]}}`)
	for _, tc := range []struct {
		name     string
		patch    SpecPatch
		wantNet  bool
		wantHost string
	}{
		{"none", SpecPatch{EtcDir: "/run/c2vm/etc"}, true, ""},
		{"host network and name", SpecPatch{EtcDir: "/run/c2vm/etc", HostNetwork: true, Hostname: "box"}, false, "box"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := PatchSpec(in, tc.patch)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := PatchSpec(in, tc.patch)
			if !bytes.Equal(out, again) {
				t.Error("output is not deterministic")
			}
			var got struct {
				ZZUnknown struct{ Keep []int }
				Root      struct {
					Path     string
					Readonly bool
				}
				Hostname string
				Mounts   []struct {
					Destination, Type, Source string
					Options                   []string
				}
				Linux struct {
					Namespaces  []struct{ Type string }
					MaskedPaths []string
				}
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if len(got.ZZUnknown.Keep) != 2 || len(got.Linux.MaskedPaths) != 1 {
				t.Errorf("unknown fields lost: %s", out)
			}
			if got.Root.Path != "rootfs" || !got.Root.Readonly {
				t.Errorf("root %+v", got.Root)
			}
			var dests []string
			for _, m := range got.Mounts {
				dests = append(dests, m.Destination)
			}
			if want := []string{"/tmp", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname"}; !reflect.DeepEqual(dests, want) {
				t.Errorf("mount destinations %v, want %v", dests, want)
			}
			if m := got.Mounts[1]; m.Source != "/run/c2vm/etc/hosts" || m.Type != "bind" || !reflect.DeepEqual(m.Options, []string{"rbind", "rprivate"}) {
				t.Errorf("hosts mount %+v", m)
			}
			hasNet := false
			for _, ns := range got.Linux.Namespaces {
				hasNet = hasNet || ns.Type == "network"
			}
			if hasNet != tc.wantNet || got.Hostname != tc.wantHost {
				t.Errorf("network ns %v (want %v), hostname %q (want %q)", hasNet, tc.wantNet, got.Hostname, tc.wantHost)
			}
		})
	}
	for _, bad := range []string{"", "null", "[]", `{"mounts":"x"}`, `{"linux":{"namespaces":1}}`} {
		if _, err := PatchSpec([]byte(bad), SpecPatch{}); err == nil {
			t.Errorf("PatchSpec(%q): no error", bad)
		}
	}
}

func FuzzPatchSpec(f *testing.F) {
	f.Add([]byte(testSpec), true, "h")
	f.Fuzz(func(t *testing.T, data []byte, hostNet bool, host string) {
		out, err := PatchSpec(data, SpecPatch{EtcDir: "/e", HostNetwork: hostNet, Hostname: host})
		if err != nil {
			return
		}
		again, err := PatchSpec(out, SpecPatch{EtcDir: "/e", HostNetwork: hostNet, Hostname: host})
		if err != nil {
			t.Fatalf("patching the output again: %v", err)
		}
		if !bytes.Equal(out, again) {
			t.Fatalf("not idempotent:\n%s\n%s", out, again)
		}
	})
}

func TestHostsAndResolv(t *testing.T) {
	h := HostsFile("web", netip.MustParsePrefix("10.0.2.15/24"))
	if !strings.HasPrefix(h, "127.0.0.1\tlocalhost\n") || !strings.HasSuffix(h, "10.0.2.15\tweb\n") {
		t.Errorf("hosts %q", h)
	}
	// docker's, byte for byte, with --network none.
	if h := HostsFile("web", netip.Prefix{}); h != "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n" {
		t.Errorf("hosts without network %q", h)
	}
	if r := ResolvConf([]string{"1.1.1.1", "9.9.9.9"}); r != "nameserver 1.1.1.1\nnameserver 9.9.9.9\n" {
		t.Errorf("resolv.conf %q", r)
	}
}

func TestStopper(t *testing.T) {
	for _, tc := range []struct {
		name        string
		signal      string
		timeout     time.Duration
		wantSig     string
		wantTimeout time.Duration
	}{
		{"defaults", "", 0, "SIGTERM", 10 * time.Second},
		{"image stop signal", "SIGQUIT", 3 * time.Second, "SIGQUIT", 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newClock()
			kills := make(chan string, 4)
			s := stopper{clock: clock, signal: tc.signal, timeout: tc.timeout, kill: func(sig string) { kills <- sig }}
			requests, done := make(chan string), make(chan struct{})
			finished := make(chan struct{})
			go func() { s.run(requests, done); close(finished) }()
			requests <- "hello" // ignored
			requests <- StopRequest
			if got := <-kills; got != tc.wantSig {
				t.Errorf("first kill %s, want %s", got, tc.wantSig)
			}
			timers := clock.waitAfters(t, 1)
			if timers[0].d != tc.wantTimeout {
				t.Errorf("timeout %v, want %v", timers[0].d, tc.wantTimeout)
			}
			select {
			case k := <-kills:
				t.Fatalf("kill %s before the timeout", k)
			default:
			}
			timers[0].ch <- time.Time{}
			if got := <-kills; got != "KILL" {
				t.Errorf("after timeout kill %s, want KILL", got)
			}
			requests <- StopRequest // a second request kills at once
			if got := <-kills; got != "KILL" {
				t.Errorf("second request kill %s, want KILL", got)
			}
			close(done)
			<-finished
		})
	}
}

func TestScanStopRequests(t *testing.T) {
	to := make(chan string, 4)
	if err := scanStopRequests(strings.NewReader("noise\nstop\n  stop \nstopp\n"), to); err != nil {
		t.Fatal(err)
	}
	if len(to) != 2 {
		t.Errorf("got %d stop requests, want 2", len(to))
	}
}

func TestRunStepForwardsStop(t *testing.T) {
	f, c := bootEnv(t, func(c *bootcfg.Config) { c.Container.StopSignal = "SIGINT" })
	stop := make(chan string, 1)
	stop <- StopRequest
	// runc (pid 100) exits only once the kill (pid 101) has been started.
	f.waits = nil
	wait := make(chan struct{})
	go func() {
		for len(f.callsWith("start /sbin/runc --root /run/runc kill")) == 0 {
			time.Sleep(time.Millisecond)
		}
		f.mu.Lock()
		f.waits = []fakeWait{{pid: 101, ws: 0}, {pid: 100, ws: unix.WaitStatus(unix.SIGINT)}}
		f.mu.Unlock()
		close(wait)
	}()
	sys := &blockingWait{fakeSystem: f, ready: wait}
	got := Boot(t.Context(), sys, Options{Clock: c, Stop: stop})
	if got != 130 {
		t.Fatalf("status %d, want 130; console %q", got, f.read(t, "/dev/console"))
	}
	if kills := f.callsWith("start /sbin/runc --root /run/runc kill"); len(kills) != 1 || kills[0] != "start /sbin/runc --root /run/runc kill c2vm SIGINT" {
		t.Errorf("kills %v", kills)
	}
}

// blockingWait holds Wait4 until ready is closed.
type blockingWait struct {
	*fakeSystem
	ready chan struct{}
}

func (b *blockingWait) Wait4() (int, unix.WaitStatus, error) {
	<-b.ready
	return b.fakeSystem.Wait4()
}

func TestTopMounts(t *testing.T) {
	got := topMounts(bootcfg.Default().Mounts)
	if want := []string{"/proc", "/sys", "/dev", "/run", "/tmp"}; !reflect.DeepEqual(got, want) {
		t.Errorf("topMounts = %v, want %v", got, want)
	}
}

func TestRemoveExcept(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{"init", "sbin/runc", "lib/modules/6.1/x.ko", "c2vm/boot.json", "c2vm/rootfs/bin/sh", "newroot/sbin/runc"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeExcept(root, []string{filepath.Join(root, "newroot"), filepath.Join(root, "c2vm/rootfs")}); err != nil {
		t.Fatal(err)
	}
	var left []string
	filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err == nil && p != root {
			rel, _ := filepath.Rel(root, p)
			left = append(left, rel)
		}
		return nil
	})
	want := []string{"c2vm", "c2vm/rootfs", "c2vm/rootfs/bin", "c2vm/rootfs/bin/sh", "newroot", "newroot/sbin", "newroot/sbin/runc"}
	if !reflect.DeepEqual(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
}

func TestEmptyInitramfsRefusesOutsidePID1(t *testing.T) {
	if err := (&Linux{}).EmptyInitramfs(t.TempDir(), nil); err == nil {
		t.Fatal("EmptyInitramfs ran outside PID 1")
	}
}

func TestParseFlags(t *testing.T) {
	if f, err := bootcfg.ParseMountFlags([]string{"ro", "nosuid", "rbind"}); err != nil || f != unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_BIND|unix.MS_REC {
		t.Errorf("ParseMountFlags = %#x, %v", f, err)
	}
	if _, err := bootcfg.ParseMountFlags([]string{"bogus"}); err == nil {
		t.Error("unknown flag accepted")
	}
}
