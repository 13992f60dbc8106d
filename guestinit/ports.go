package guestinit

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
)

const (
	virtioPortsDir   = "/sys/class/virtio-ports"
	virtioConsoleDrv = "/sys/bus/virtio/drivers/virtio_console"
	portWait         = 2 * time.Second
	pollInterval     = 20 * time.Millisecond
)

// FindPorts scans a virtio-ports sysfs class dir and maps each port name to its device node,
// /dev/<entry>. Entries without a name (not yet announced by the host) are left out; complete is
// false when there were any.
func FindPorts(sys System, sysDir string) (ports map[string]string, complete bool, err error) {
	ents, err := sys.ReadDir(sysDir)
	if err != nil {
		return nil, false, fmt.Errorf("scan virtio ports: %w", err)
	}
	ports, complete = map[string]string{}, true
	for _, e := range ents { // ReadDir sorts by name: deterministic when names repeat
		data, err := sys.ReadFile(path.Join(sysDir, e.Name(), "name"))
		name := strings.TrimSpace(string(data))
		if err != nil || name == "" {
			complete = false
			continue
		}
		if _, dup := ports[name]; !dup {
			ports[name] = "/dev/" + e.Name()
		}
	}
	return ports, complete, nil
}

// stepPorts finds the named channels and opens the status channel. The host names virtio-serial
// ports asynchronously after the virtio_console driver binds, so when a virtio console device
// exists it polls, bounded, until the status port is named and no port is unnamed. When the host
// serves the channels over vsock (see openChannel), the status channel is a vsock connection.
func stepPorts(_ context.Context, st *State) error {
	vsock := channelsOverVsock(st)
	if ents, err := st.Sys.ReadDir(virtioConsoleDrv); err != nil || !hasDevice(ents) {
		if vsock {
			return openStatusPort(st)
		}
		return nil // no virtio console: stdio and status go to /dev/console
	}
	var scanErr error
	// Out of time, the status port is used if it is named at all.
	_ = st.poll(portWait, func() (bool, error) {
		ports, complete, err := FindPorts(st.Sys, virtioPortsDir)
		if scanErr = err; err == nil {
			st.Ports = ports
		}
		_, ok := ports[bootcfg.StatusPortName]
		return (ok || vsock) && complete || vsock && err != nil, nil
	})
	if _, ok := st.Ports[bootcfg.StatusPortName]; ok || vsock { // complete, or the status port at least
		return openStatusPort(st)
	}
	if scanErr != nil {
		return scanErr
	}
	return fmt.Errorf("virtio ports: no port named %s after %v (found %d)", bootcfg.StatusPortName, portWait, len(st.Ports))
}

func hasDevice[E interface{ Name() string }](ents []E) bool {
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "virtio") {
			return true
		}
	}
	return false
}

// openStatusPort opens the status channel (once: a virtio port can be open only once) and
// announces the init on it.
func openStatusPort(st *State) error {
	if st.statusPort != nil {
		return nil
	}
	f, err := openChannel(st, bootcfg.StatusPortName, "", os.O_RDWR)
	if err != nil {
		return fmt.Errorf("open status port: %w", err)
	}
	st.statusPort = f
	if err := st.writeStatus([]byte(bootcfg.ReadyLine + "\n")); err != nil {
		st.Debugf("status port: %v", err)
	}
	return nil
}
