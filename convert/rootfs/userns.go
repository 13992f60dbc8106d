package rootfs

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// sqfstar 4.5.1 ignores -root-uid/-root-gid and gives the root directory the uid and gid of the user
// running it, so an unprivileged convert would make / of the guest owned by that user. When c2vm does
// not run as root, sqfstar therefore runs in a new user namespace that maps the caller to 0:0 (the
// tar stream carries every other owner). Where user namespaces are not allowed, sqfstar runs as is
// and the root directory keeps the caller's ownership.

var (
	usernsOnce sync.Once
	usernsOK   bool
)

// rootMapping returns the SysProcAttr that runs a child as root of a new user namespace, or nil when
// c2vm runs as root already or user namespaces are unavailable.
func rootMapping(ctx context.Context, bin string) *syscall.SysProcAttr {
	if os.Geteuid() == 0 {
		return nil
	}
	usernsOnce.Do(func() {
		// Not the caller's ctx: a cancelled first conversion must not disable the mapping for the
		// life of the process.
		pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(pctx, bin, "-version")
		cmd.SysProcAttr = newRootMapping()
		cmd.WaitDelay = 5 * time.Second
		usernsOK = cmd.Run() == nil
	})
	if !usernsOK {
		return nil
	}
	return newRootMapping()
}

func newRootMapping() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}},
	}
}
