package guestinit

import (
	"context"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// System is every operation the init performs on the machine. Linux is the real implementation;
// tests use a fake that records calls.
type System interface {
	Mount(source, target, fstype string, flags uintptr, data string) error
	Unmount(target string, flags int) error
	MkdirAll(path string, perm os.FileMode) error
	// WriteFile creates or replaces a regular file.
	WriteFile(path string, data []byte, perm os.FileMode) error
	// AppendFile writes to an existing file without creating it: devices, /proc and /sys files.
	AppendFile(path string, data []byte) error
	ReadFile(path string) ([]byte, error)
	// Lsetxattr sets an extended attribute of path itself (not of a symlink's target).
	Lsetxattr(path, name string, value []byte) error
	// Symlink creates path as a symbolic link to target; an existing path is an error (os.ErrExist).
	Symlink(target, path string) error
	// Link makes newname a hard link to oldname.
	Link(oldname, newname string) error
	// Lchown sets the owner of path itself (not of a symlink's target).
	Lchown(path string, uid, gid int) error
	ReadDir(path string) ([]os.DirEntry, error)
	Stat(path string) (os.FileInfo, error)
	// Lstat is Stat without following a final symlink.
	Lstat(path string) (os.FileInfo, error)
	// CopyTree copies the tree at src into the existing directory dst, keeping every attribute
	// (see Linux.CopyTree).
	CopyTree(src, dst string) error
	// CopyOwnership gives dst the owner and permissions of src, as docker gives a volume's root
	// those of the image's directory on every run (see Linux.CopyOwnership).
	CopyOwnership(src, dst string) error
	// CopyFile copies a regular file, streaming (runc is ~10 MB).
	CopyFile(src, dst string, perm os.FileMode) error
	OpenFile(path string, flag int, perm os.FileMode) (*os.File, error)

	// LoadModule loads a kernel module and its dependencies (modules.dep order).
	LoadModule(ctx context.Context, name string) error

	// EmptyInitramfs deletes everything on the filesystem of root except the paths in keep (and
	// anything on other filesystems), to free the initramfs memory before the switch.
	EmptyInitramfs(root string, keep []string) error
	Chdir(path string) error
	Chroot(path string) error

	// StartProcess starts argv[0] with files as fds 0, 1, 2 and returns its pid. The caller
	// reaps it with Wait4.
	StartProcess(argv []string, files []*os.File) (int, error)
	// Wait4 waits for any child and returns its pid and status.
	Wait4() (int, unix.WaitStatus, error)
	// Kill sends sig to process pid.
	Kill(pid int, sig unix.Signal) error

	// OpenPTY opens a pseudo-terminal pair on the init's devpts.
	OpenPTY() (master, slave *os.File, err error)
	// SetWinsize sets the window size of the terminal f.
	SetWinsize(f *os.File, rows, cols uint16) error

	Sethostname(name string) error
	// LinkUp brings a network interface up.
	LinkUp(name string) error
	// ConfigureLink adds addr to the interface, brings it up and, when gw is valid, adds the
	// default route through gw.
	ConfigureLink(name string, addr netip.Prefix, gw netip.Addr) error

	Sync()
	// Halt ends the machine: bootcfg.HaltPowerOff powers it off, bootcfg.HaltReboot reboots it.
	Halt(mode string) error
}
