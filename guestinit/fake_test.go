package guestinit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeSystem is a System whose files live below a temp dir and whose privileged calls are recorded.
type fakeSystem struct {
	root string

	mu    sync.Mutex
	calls []string
	// fail makes a call fail when its recorded text starts with the key.
	fail map[string]error
	// waits is what Wait4 returns, in order; then ECHILD.
	waits    []fakeWait
	nextPID  int
	poweroff int
	// powerErrs are returned by the first PowerOff calls.
	powerErrs []error
}

type fakeWait struct {
	pid int
	ws  unix.WaitStatus
}

func newFake(t *testing.T) *fakeSystem {
	t.Helper()
	return &fakeSystem{root: t.TempDir(), fail: map[string]error{}, nextPID: 100}
}

func (f *fakeSystem) p(path string) string { return filepath.Join(f.root, path) }

func (f *fakeSystem) record(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := fmt.Sprintf(format, args...)
	f.calls = append(f.calls, c)
	for k, err := range f.fail {
		if strings.HasPrefix(c, k) {
			return err
		}
	}
	return nil
}

// file puts a file into the fake's filesystem.
func (f *fakeSystem) file(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(f.p(path)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.p(path), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeSystem) read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(f.p(path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// callsWith returns the recorded calls that start with prefix.
func (f *fakeSystem) callsWith(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeSystem) Mount(source, target, fstype string, flags uintptr, data string) error {
	return f.record("mount %s %s %s %#x %s", source, target, fstype, flags, data)
}
func (f *fakeSystem) Unmount(target string, flags int) error { return f.record("unmount %s", target) }
func (f *fakeSystem) MkdirAll(path string, perm os.FileMode) error {
	if err := f.record("mkdir %s", path); err != nil {
		return err
	}
	return os.MkdirAll(f.p(path), perm)
}
func (f *fakeSystem) Lstat(path string) (os.FileInfo, error) { return os.Lstat(f.p(path)) }
func (f *fakeSystem) CopyTree(src, dst string) error         { return f.record("copytree %s %s", src, dst) }
func (f *fakeSystem) CopyOwnership(src, dst string) error {
	return f.record("copyownership %s %s", src, dst)
}
func (f *fakeSystem) Lsetxattr(path, name string, value []byte) error {
	return f.record("setxattr %s %s %q", path, name, value)
}
func (f *fakeSystem) Symlink(target, path string) error {
	if err := f.record("symlink %s %s", target, path); err != nil {
		return err
	}
	return os.Symlink(target, f.p(path))
}
func (f *fakeSystem) Link(oldname, newname string) error {
	if err := f.record("link %s %s", oldname, newname); err != nil {
		return err
	}
	return os.Link(f.p(oldname), f.p(newname))
}
func (f *fakeSystem) Lchown(path string, uid, gid int) error {
	return f.record("lchown %s %d:%d", path, uid, gid)
}
func (f *fakeSystem) WriteFile(path string, data []byte, perm os.FileMode) error {
	if err := f.record("write %s %v", path, perm); err != nil {
		return err
	}
	return os.WriteFile(f.p(path), data, perm)
}
func (f *fakeSystem) AppendFile(path string, data []byte) error {
	if err := f.record("append %s %q", path, data); err != nil {
		return err
	}
	file, err := os.OpenFile(f.p(path), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer file.Close()
	_, err = file.Write(data)
	return err
}
func (f *fakeSystem) ReadFile(path string) ([]byte, error)       { return os.ReadFile(f.p(path)) }
func (f *fakeSystem) ReadDir(path string) ([]os.DirEntry, error) { return os.ReadDir(f.p(path)) }
func (f *fakeSystem) Stat(path string) (os.FileInfo, error)      { return os.Stat(f.p(path)) }
func (f *fakeSystem) CopyFile(src, dst string, perm os.FileMode) error {
	if err := f.record("copy %s %s", src, dst); err != nil {
		return err
	}
	b, err := os.ReadFile(f.p(src))
	if err != nil {
		return err
	}
	return os.WriteFile(f.p(dst), b, perm)
}
func (f *fakeSystem) OpenFile(path string, flag int, perm os.FileMode) (*os.File, error) {
	if err := f.record("open %s", path); err != nil {
		return nil, err
	}
	if path == "/dev/null" {
		return os.Open(os.DevNull)
	}
	return os.OpenFile(f.p(path), flag, perm)
}
func (f *fakeSystem) LoadModule(_ context.Context, name string) error {
	return f.record("module %s", name)
}
func (f *fakeSystem) Kill(pid int, sig unix.Signal) error {
	return f.record("kill %d %d", pid, int(sig))
}
func (f *fakeSystem) OpenPTY() (*os.File, *os.File, error) {
	if err := f.record("openpty"); err != nil {
		return nil, nil, err
	}
	return nil, nil, errors.New("fake: no pseudo-terminals")
}
func (f *fakeSystem) SetWinsize(_ *os.File, rows, cols uint16) error {
	return f.record("winsize %d %d", rows, cols)
}
func (f *fakeSystem) EmptyInitramfs(root string, keep []string) error {
	return f.record("empty %s %s", root, strings.Join(keep, ","))
}
func (f *fakeSystem) Chdir(path string) error  { return f.record("chdir %s", path) }
func (f *fakeSystem) Chroot(path string) error { return f.record("chroot %s", path) }
func (f *fakeSystem) StartProcess(argv []string, files []*os.File) (int, error) {
	if err := f.record("start %s", strings.Join(argv, " ")); err != nil {
		return 0, err
	}
	if len(files) != 3 {
		return 0, fmt.Errorf("want 3 stdio files, got %d", len(files))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	pid := f.nextPID
	f.nextPID++
	return pid, nil
}
func (f *fakeSystem) Wait4() (int, unix.WaitStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.waits) == 0 {
		return 0, 0, unix.ECHILD
	}
	w := f.waits[0]
	f.waits = f.waits[1:]
	return w.pid, w.ws, nil
}
func (f *fakeSystem) Sethostname(name string) error { return f.record("hostname %s", name) }
func (f *fakeSystem) LinkUp(name string) error      { return f.record("linkup %s", name) }
func (f *fakeSystem) ConfigureLink(name string, addr netip.Prefix, gw netip.Addr) error {
	return f.record("link %s %s %s", name, addr, gw)
}
func (f *fakeSystem) Sync() { f.record("sync") }
func (f *fakeSystem) Halt(mode string) error {
	f.record("%s", mode) // "poweroff" or "reboot"
	f.mu.Lock()
	defer f.mu.Unlock()
	f.poweroff++
	if len(f.powerErrs) > 0 {
		err := f.powerErrs[0]
		f.powerErrs = f.powerErrs[1:]
		return err
	}
	return nil
}

// fakeClock advances only when slept on; After returns channels the test fires.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	afters []fakeAfter
}

type fakeAfter struct {
	d  time.Duration
	ch chan time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Unix(1e9, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.afters = append(c.afters, fakeAfter{d, ch})
	return ch
}

// waitAfters waits until n timers were asked for and returns them.
func (c *fakeClock) waitAfters(t *testing.T, n int) []fakeAfter {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		a := append([]fakeAfter(nil), c.afters...)
		c.mu.Unlock()
		if len(a) >= n {
			return a
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("want %d timers", n)
	return nil
}
