package guestinit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/u-root/u-root/pkg/kmodule"
	"github.com/vishvananda/netlink"

	"github.com/c2vm/c2vm/bootcfg"
	"github.com/c2vm/c2vm/internal/fileutil"
	"golang.org/x/sys/unix"
)

// Linux is the real System.
type Linux struct {
	// ModulesRoot is the root below which lib/modules/<uname -r> is found (default "/").
	ModulesRoot string

	once   sync.Once
	prober *kmodule.Prober
	err    error
}

var _ System = (*Linux)(nil)

func (l *Linux) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}

func (l *Linux) Unmount(target string, flags int) error { return unix.Unmount(target, flags) }

func (l *Linux) MkdirAll(path string, perm os.FileMode) error { return os.MkdirAll(path, perm) }
func (l *Linux) Symlink(target, path string) error            { return os.Symlink(target, path) }
func (l *Linux) Link(oldname, newname string) error           { return os.Link(oldname, newname) }
func (l *Linux) Lchown(path string, uid, gid int) error       { return os.Lchown(path, uid, gid) }

func (l *Linux) Lstat(path string) (os.FileInfo, error) { return os.Lstat(path) }

func (l *Linux) Lsetxattr(path, name string, value []byte) error {
	return unix.Lsetxattr(path, name, value, 0)
}

func (l *Linux) WriteFile(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return err
	}
	return os.Chmod(path, perm) // exact mode, whatever the umask
}

func (l *Linux) AppendFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (l *Linux) ReadFile(path string) ([]byte, error)       { return os.ReadFile(path) }
func (l *Linux) ReadDir(path string) ([]os.DirEntry, error) { return os.ReadDir(path) }
func (l *Linux) Stat(path string) (os.FileInfo, error)      { return os.Stat(path) }
func (l *Linux) Chdir(path string) error                    { return unix.Chdir(path) }
func (l *Linux) Chroot(path string) error                   { return unix.Chroot(path) }
func (l *Linux) Sethostname(name string) error              { return unix.Sethostname([]byte(name)) }
func (l *Linux) Sync()                                      { unix.Sync() }
func (l *Linux) Halt(mode string) error {
	if mode == bootcfg.HaltReboot {
		return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	}
	return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}
func (l *Linux) OpenFile(p string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(p, flag|unix.O_NOCTTY, perm)
}

// CopyFile copies a new file (fileutil.CopyFile) and gives it perm whatever the umask.
func (l *Linux) CopyFile(src, dst string, perm os.FileMode) error {
	if err := fileutil.CopyFile(src, dst, perm); err != nil {
		return err
	}
	return os.Chmod(dst, perm)
}

// LoadModule loads a module and its dependencies with u-root's kmodule, reading modules.dep once.
func (l *Linux) LoadModule(_ context.Context, name string) error {
	l.once.Do(func() {
		root := l.ModulesRoot
		if root == "" {
			root = "/"
		}
		l.prober, l.err = kmodule.NewProber(kmodule.ProbeOpts{RootDir: root})
	})
	if l.err != nil {
		return l.err
	}
	return l.prober.Probe(name, "")
}

// EmptyInitramfs deletes the initramfs contents except keep. It refuses to run outside PID 1 or
// on a root that is not a ramfs/tmpfs, so that it can never empty a real disk.
func (l *Linux) EmptyInitramfs(root string, keep []string) error {
	if os.Getpid() != 1 {
		return errors.New("refusing to empty the root filesystem: not PID 1")
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(root, &fs); err != nil {
		return err
	}
	if fs.Type != unix.RAMFS_MAGIC && fs.Type != unix.TMPFS_MAGIC {
		return fmt.Errorf("refusing to empty %s: filesystem type %#x is not ramfs or tmpfs", root, fs.Type)
	}
	return removeExcept(root, keep)
}

// removeExcept deletes everything below root that is on root's filesystem, except the paths in
// keep (absolute, below root) and the directories leading to them.
func removeExcept(root string, keep []string) error {
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		return err
	}
	k := map[string]bool{}
	for _, p := range keep {
		p = filepath.Clean(p)
		for ; p != root && p != "/" && p != "."; p = filepath.Dir(p) {
			k[p] = true // parents are walked, not removed
		}
	}
	return removeDir(root, st.Dev, k, keepSet(keep))
}

func keepSet(keep []string) map[string]bool {
	m := map[string]bool{}
	for _, p := range keep {
		m[filepath.Clean(p)] = true
	}
	return m
}

func removeDir(dir string, dev uint64, onPath, keep map[string]bool) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if keep[p] {
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Dev != dev {
			continue // a mount point: not ours to delete
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := removeDir(p, dev, onPath, keep); err != nil {
				errs = append(errs, err)
			}
			if onPath[p] {
				continue
			}
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// StartProcess starts argv with files as fds 0-2 and releases it: Wait4 reaps it.
func (l *Linux) StartProcess(argv []string, files []*os.File) (int, error) {
	p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{
		Dir:   "/",
		Env:   []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Files: files,
	})
	if err != nil {
		return 0, err
	}
	pid := p.Pid
	p.Release()
	return pid, nil
}

func (l *Linux) Wait4() (int, unix.WaitStatus, error) {
	var ws unix.WaitStatus
	pid, err := unix.Wait4(-1, &ws, 0, nil)
	return pid, ws, err
}

func (l *Linux) LinkUp(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(link)
}

func (l *Linux) ConfigureLink(name string, addr netip.Prefix, gw netip.Addr) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	ipnet := &net.IPNet{IP: net.IP(addr.Addr().AsSlice()), Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen())}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipnet}); err != nil {
		return fmt.Errorf("address %s: %w", addr, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	if !gw.IsValid() {
		return nil
	}
	route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.IP(gw.AsSlice())}
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}

// Kill sends sig to process pid.
func (l *Linux) Kill(pid int, sig unix.Signal) error { return unix.Kill(pid, sig) }

// SetWinsize sets the window size of the terminal f (TIOCSWINSZ).
func (l *Linux) SetWinsize(f *os.File, rows, cols uint16) error {
	ws := &unix.Winsize{Row: rows, Col: cols}
	return fileutil.Control(f, func(fd int) error { return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, ws) })
}

// OpenPTY opens a pseudo-terminal pair on the init's devpts (mounted with newinstance).
func (l *Linux) OpenPTY() (master, slave *os.File, err error) {
	if master, slave, err = openPTYAt("/dev/pts/ptmx"); err != nil {
		return openPTYAt("/dev/ptmx")
	}
	return master, slave, nil
}

// openPTYAt opens a pseudo-terminal pair through the multiplexer ptmx.
func openPTYAt(ptmx string) (master, slave *os.File, err error) {
	m, err := os.OpenFile(ptmx, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open pty master: %w", err)
	}
	var n int
	err = fileutil.Control(m, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return fmt.Errorf("unlock pty: %w", err)
		}
		var err error
		n, err = unix.IoctlGetInt(fd, unix.TIOCGPTN)
		return err
	})
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	s, err := os.OpenFile(path.Join(ptsDir(ptmx), strconv.Itoa(n)), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("open pty slave: %w", err)
	}
	return m, s, nil
}

// ptsDir is the devpts directory of a ptmx: /dev/pts for /dev/pts/ptmx and for /dev/ptmx.
func ptsDir(ptmx string) string {
	dir := path.Dir(ptmx)
	if path.Base(dir) == "pts" {
		return dir
	}
	return path.Join(dir, "pts")
}
