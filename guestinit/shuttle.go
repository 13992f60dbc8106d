package guestinit

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path"
	"strconv"
	"strings"

	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/c2vm/c2vm/agent/shuttle"
	"github.com/c2vm/c2vm/bootcfg"
)

// Shuttle mode: the init is Tangled spindle's guest agent (package agent/shuttle), so that any
// OCI image is a spindle CI image. It is on when the kernel command line has
// shuttle.vsock_port=N (spindle always appends it; the init then dials the host's vsock port N)
// or when the VM has a virtio-serial port named ShuttlePortName (tests, VMMs without vsock; it
// wins over vsock).
//
// The workload in shuttle mode is the image's container with an idle process instead of the
// image's entrypoint: spindle runs a job as a series of steps (ExecStart), each of which must
// run inside the image (its rootfs, env, PATH, users) — exactly what `runc exec` into a running
// container gives, with the exec machinery the c2vm agent already has (agentServer.Exec: user
// lookups in the container's /etc/passwd, cwd, env, 126/127 from runc's log). A CI image's own
// entrypoint is usually a shell or nothing, which would end at once with stdin at /dev/null, and
// its end would power the VM off between steps. The idle process is the init binary itself
// (hard-linked into /sbin before the switch, where runc lives, and bound into the container at
// IdlePath): any image can run it, it needs no file from the image, and it exits 0 on SIGTERM,
// which is how Poweroff ends the VM through the run step's usual path (status, unmount, power off).
//
// The image contract spindle's steps expect is provided when the image lacks it: a user
// ShuttleUser (the first free uid and gid from 1000, home /workspace), /workspace writable by it
// — the first virtio disk that is neither the rootfs nor named by the boot config, when it holds
// ext4 (the volume spindle attaches for the spec's workspace volume), else a directory in the
// container's writable layer — and /workspace/repo.

// ShuttlePortName is the virtio-serial port on which the init speaks spindle's protocol instead
// of dialling vsock.
const ShuttlePortName = "c2vm.shuttle"

// Shuttle image contract.
const (
	ShuttleUser      = "spindle-workflow"
	ShuttleWorkspace = "/workspace"
	// IdlePath is where the idle process is bound into the container; IdleName is its base name,
	// by which the init binary knows it runs as the idle process (see Idle).
	IdlePath = "/dev/" + IdleName
	IdleName = "c2vm-idle"
)

// idleHostPath is the init's hard link beside runc (/sbin is kept across the switch).
var idleHostPath = path.Join(path.Dir(runcPath), IdleName)

// initPath is the init binary in the initramfs.
const initPath = "/init"

// shuttleFirstID is the first uid and gid tried for ShuttleUser.
const shuttleFirstID = 1000

// shuttleMode says whether and how the init speaks spindle's protocol: over the virtio-serial
// port (port != ""), or by dialling vsock port vsock (> 0).
func shuttleMode(st *State) (port string, vsock uint32, on bool) {
	if p, ok := st.Ports[ShuttlePortName]; ok {
		return p, 0, true
	}
	data, err := st.Sys.ReadFile("/proc/cmdline")
	if err != nil {
		return "", 0, false
	}
	if n, ok := ParseShuttlePort(string(data)); ok {
		return "", n, true
	}
	return "", 0, false
}

// ParseShuttlePort returns N from the last shuttle.vsock_port=N on a kernel command line.
func ParseShuttlePort(cmdline string) (uint32, bool) {
	var port uint32
	found := false
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, shuttle.VsockPortArg+"="); ok {
			if n, err := strconv.ParseUint(v, 10, 32); err == nil && n > 0 {
				port, found = uint32(n), true
			}
		}
	}
	return port, found
}

// stepShuttleIdle hard-links the init binary beside runc, before the switch deletes the
// initramfs's other files, to be the container's idle process.
func stepShuttleIdle(_ context.Context, st *State) error {
	if _, _, on := shuttleMode(st); !on {
		return nil
	}
	if _, err := st.Sys.Lstat(idleHostPath); err == nil {
		return nil
	}
	if err := st.Sys.Link(initPath, idleHostPath); err != nil {
		return fmt.Errorf("shuttle: keep the init as the idle process: %w", err)
	}
	return nil
}

// stepShuttleDisks adds the workspace disk, when spindle attached one, to the container's volumes
// (after the rootfs step, which found the rootfs disk; before the volumes step, which mounts it).
func stepShuttleDisks(_ context.Context, st *State) error {
	if _, _, on := shuttleMode(st); !on {
		return nil
	}
	for _, v := range st.Cfg.Container.Volumes {
		if path.Clean(v.Target) == ShuttleWorkspace {
			return nil // the boot config has one
		}
	}
	dev := workspaceDisk(st)
	if dev == "" {
		st.Debugf("shuttle: no workspace disk: %s is a directory of the container", ShuttleWorkspace)
		return nil
	}
	st.Debugf("shuttle: workspace disk %s", dev)
	st.Cfg.Container.Volumes = append(st.Cfg.Container.Volumes, bootcfg.Volume{Target: ShuttleWorkspace, FSType: "ext4", Device: dev})
	return nil
}

// workspaceDisk returns the first virtio disk, in name order, that is not the rootfs or a disk
// the boot config names and that holds ext4; "" when none.
func workspaceDisk(st *State) string {
	c := st.Cfg.Container
	used := map[string]bool{}
	if c.Rootfs.Format != bootcfg.FormatInitrd {
		if dev, err := findRootfs(st, c.Rootfs); err == nil {
			used[dev] = true
		}
	}
	serials := map[string]bool{c.Overlay.Serial: true}
	used[c.Overlay.Device] = true
	for _, v := range c.Volumes {
		used[v.Device], serials[v.Serial] = true, true
	}
	delete(serials, "")
	for _, name := range disks(st) {
		dev := "/dev/" + name
		if !strings.HasPrefix(name, "vd") || used[dev] {
			continue
		}
		if b, err := st.Sys.ReadFile(path.Join(sysBlock, name, "serial")); err == nil && serials[strings.TrimSpace(string(b))] {
			continue
		}
		if isExt4(st, dev) {
			return dev
		}
	}
	return ""
}

// isExt4 reports whether dev has an ext2/3/4 superblock magic (0xEF53 at byte 1080).
func isExt4(st *State, dev string) bool {
	f, err := st.Sys.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [2]byte
	if _, err := f.ReadAt(magic[:], 1080); err != nil {
		return false
	}
	return binary.LittleEndian.Uint16(magic[:]) == 0xEF53
}

// stepShuttleImage provides the image contract (ShuttleUser, /workspace, /workspace/repo) and
// makes the container's process the idle process (after the spec step wrote config.json).
func stepShuttleImage(_ context.Context, st *State) error {
	if _, _, on := shuttleMode(st); !on {
		return nil
	}
	c := st.Cfg.Container
	root := path.Join(c.BundleDir, "rootfs")
	uid, gid, err := ensureShuttleUser(st, root)
	if err != nil {
		return fmt.Errorf("shuttle: user %s: %w", ShuttleUser, err)
	}
	ws := path.Join(root, ShuttleWorkspace)
	for i, v := range c.Volumes {
		if path.Clean(v.Target) == ShuttleWorkspace && !v.Share() && v.FSType != bootcfg.FSTypeTmpfs {
			ws = volumeDir(i) // the disk's root; the container sees it at /workspace
		}
	}
	for _, dir := range []string{ws, path.Join(ws, "repo")} {
		if err := st.Sys.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("shuttle: %w", err)
		}
		if err := st.Sys.Lchown(dir, uid, gid); err != nil {
			return fmt.Errorf("shuttle: %w", err)
		}
	}
	specPath := path.Join(c.BundleDir, "config.json")
	data, err := st.Sys.ReadFile(specPath)
	if err != nil {
		return fmt.Errorf("shuttle: %w", err)
	}
	out, err := idleSpec(data, idleHostPath)
	if err != nil {
		return fmt.Errorf("shuttle: %s: %w", specPath, err)
	}
	st.Terminal = false
	return st.Sys.WriteFile(specPath, out, 0o644)
}

// idleSpec makes the runtime spec's process the idle process, bound from idle, without a
// terminal; the rest of the process (env, user, cwd, capabilities) stays the image's, which the
// steps inherit through runc exec.
func idleSpec(data []byte, idle string) ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil || doc == nil {
		return nil, fmt.Errorf("runtime spec: not a JSON object: %v", err)
	}
	var proc map[string]json.RawMessage
	if err := unmarshalField(doc, "process", &proc); err != nil {
		return nil, err
	}
	if proc == nil {
		proc = map[string]json.RawMessage{}
	}
	if err := setField(proc, "args", []string{IdlePath}); err != nil {
		return nil, err
	}
	if err := setField(proc, "terminal", false); err != nil {
		return nil, err
	}
	if err := setField(doc, "process", proc); err != nil {
		return nil, err
	}
	var mounts []specs.Mount
	if err := unmarshalField(doc, "mounts", &mounts); err != nil {
		return nil, err
	}
	mounts = append(mounts, specs.Mount{Destination: IdlePath, Type: "bind", Source: idle, Options: []string{"bind", "ro", "nosuid", "nodev"}})
	if err := setField(doc, "mounts", mounts); err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// ensureShuttleUser returns ShuttleUser's uid and gid in the container's /etc/passwd, adding the
// user (and a group of the same name) with the first uid and gid from shuttleFirstID that neither
// file uses, home /workspace.
func ensureShuttleUser(st *State, root string) (int, int, error) {
	passwdPath, groupPath := path.Join(root, "etc/passwd"), path.Join(root, "etc/group")
	passwd, _ := st.Sys.ReadFile(passwdPath) // a missing file is an empty one
	group, _ := st.Sys.ReadFile(groupPath)
	users, err := user.ParsePasswd(strings.NewReader(string(passwd)))
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", passwdPath, err)
	}
	groups, err := user.ParseGroup(strings.NewReader(string(group)))
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", groupPath, err)
	}
	usedIDs := map[int]bool{}
	for _, u := range users {
		if u.Name == ShuttleUser {
			return u.Uid, u.Gid, nil
		}
		usedIDs[u.Uid] = true
	}
	for _, g := range groups {
		usedIDs[g.Gid] = true
	}
	id := shuttleFirstID
	for usedIDs[id] {
		id++
	}
	if err := st.Sys.MkdirAll(path.Join(root, "etc"), 0o755); err != nil {
		return 0, 0, err
	}
	add := func(p string, old []byte, line string) error {
		if len(old) > 0 && old[len(old)-1] != '\n' {
			old = append(old, '\n')
		}
		return st.Sys.WriteFile(p, append(old, line...), 0o644)
	}
	if err := add(passwdPath, passwd, fmt.Sprintf("%s:x:%d:%d:spindle workflow:%s:/bin/sh\n", ShuttleUser, id, id, ShuttleWorkspace)); err != nil {
		return 0, 0, err
	}
	if err := add(groupPath, group, fmt.Sprintf("%s:x:%d:\n", ShuttleUser, id)); err != nil {
		return 0, 0, err
	}
	return id, id, nil
}

// Idle is the container's process in shuttle mode: it waits, reaping the processes orphaned in
// the container (it is the container's PID 1: a step's background process whose shell ended is
// reparented to it), and exits 0 on SIGTERM or SIGINT. The init's main calls it when it runs as
// IdleName.
func Idle() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGCHLD)
	idle(sigs, reapChildren)
	os.Exit(0)
}

// idle reaps on every SIGCHLD (and once first, for children that ended before the signal was
// caught) until SIGTERM or SIGINT.
func idle(sigs <-chan os.Signal, reap func()) {
	reap()
	for sig := range sigs {
		if sig != unix.SIGCHLD {
			return
		}
		reap()
	}
}

// reapChildren waits for every child that has ended, without blocking (signals coalesce: one
// SIGCHLD may stand for several children).
func reapChildren() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}

// IsIdle reports whether argv0 names the idle process.
func IsIdle(argv0 string) bool { return path.Base(argv0) == IdleName }
