package vm

import (
	"fmt"
	"os"
	"strconv"
)

// Share is a host directory the guest mounts by Tag: over virtio-fs when Connect is set (a
// vhost-user-fs device whose daemon Connect starts), else over virtio-9p served by QEMU itself.
type Share struct {
	Tag string
	// Connect starts the share's virtio-fs daemon for one boot and returns QEMU's end of its
	// vhost-user socket, connected (see package share); QEMU gets it as an inherited fd.
	Connect func() (*os.File, error)
	// Dir and ReadOnly are the 9p share's directory and mode (Connect nil).
	Dir      string
	ReadOnly bool
}

// virtiofsQueueSize is the vhost-user-fs request queue: QEMU's maximum, for parallel requests.
const virtiofsQueueSize = 1024

// firstShareFD is the fd number of the first virtio-fs socket in QEMU (after stdio).
const firstShareFD = 3

// shareArgs returns the QEMU arguments for the shares: virtio-fs needs the guest's memory
// shared with the daemon (a memfd backend), and a chardev on the inherited socket per share.
func shareArgs(shares []Share, memMiB int) []string {
	var a []string
	fd := firstShareFD
	memfd := false
	for i, s := range shares {
		id := "fs" + strconv.Itoa(i)
		if s.Connect == nil {
			ro := ""
			if s.ReadOnly {
				ro = ",readonly=on"
			}
			a = append(a, "-fsdev", "local,id="+id+",path="+qemuOptValue(s.Dir)+",security_model="+security9p()+ro,
				"-device", "virtio-9p-pci,fsdev="+id+",mount_tag="+s.Tag)
			continue
		}
		memfd = true
		a = append(a, "-chardev", "socket,id="+id+",fd="+strconv.Itoa(fd),
			"-device", fmt.Sprintf("vhost-user-fs-pci,chardev=%s,tag=%s,queue-size=%d", id, s.Tag, virtiofsQueueSize))
		fd++
	}
	if memfd {
		a = append([]string{"-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", memMiB),
			"-machine", "memory-backend=mem"}, a...)
	}
	return a
}

// security9p is how QEMU's 9p server stores owners: passthrough (the guest's ids on the host
// files, as a bind mount) needs root; without it, none (files are the user's).
func security9p() string {
	if os.Geteuid() == 0 {
		return "passthrough"
	}
	return "none"
}

// connectShares starts the virtio-fs daemons of one boot and returns QEMU's ends of their
// sockets, in fd order from firstShareFD; the caller closes them once QEMU has started.
func connectShares(shares []Share) ([]*os.File, error) {
	var files []*os.File
	for _, s := range shares {
		if s.Connect == nil {
			continue
		}
		f, err := s.Connect()
		if err != nil {
			closeFiles(files)
			return nil, fmt.Errorf("host directory %s: %w", s.Tag, err)
		}
		files = append(files, f)
	}
	return files, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
