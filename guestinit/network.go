package guestinit

import (
	"context"
	"fmt"
	"net/netip"
	"path"
	"strings"
	"time"

	"github.com/c2vm/c2vm/bootcfg"
)

const (
	etcDir   = "/run/c2vm/etc"
	linkWait = 5 * time.Second
)

// stepNetwork brings loopback up, configures a static interface, sets the host name and writes
// the hosts, resolv.conf and hostname files that the spec step binds into the container.
func stepNetwork(_ context.Context, st *State) error {
	n := st.Cfg.Network
	if err := st.Sys.LinkUp("lo"); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	var addr netip.Prefix
	if n.Mode == bootcfg.NetworkStatic {
		var err error
		if addr, err = configureStatic(st, n); err != nil {
			return err
		}
	}
	st.Hostname = st.Cfg.Hostname
	if st.Hostname == "" {
		st.Hostname = st.Cfg.Container.ID
	}
	if err := st.Sys.Sethostname(st.Hostname); err != nil {
		return fmt.Errorf("set host name: %w", err)
	}
	if err := st.Sys.MkdirAll(etcDir, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"hosts":       HostsFile(st.Hostname, addr),
		"resolv.conf": ResolvConf(n.DNS),
		"hostname":    st.Hostname + "\n",
	}
	for _, name := range []string{"hosts", "resolv.conf", "hostname"} {
		if err := st.Sys.WriteFile(path.Join(etcDir, name), []byte(files[name]), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func configureStatic(st *State, n bootcfg.Network) (netip.Prefix, error) {
	addr, err := netip.ParsePrefix(n.Address)
	if err != nil {
		return addr, fmt.Errorf("address: %w", err)
	}
	var gw netip.Addr
	if n.Gateway != "" {
		if gw, err = netip.ParseAddr(n.Gateway); err != nil {
			return addr, fmt.Errorf("gateway: %w", err)
		}
	}
	// The interface appears when virtio_net has probed the device.
	dev := path.Join("/sys/class/net", n.Interface)
	if err := st.poll(linkWait, func() (bool, error) { _, err := st.Sys.Stat(dev); return err == nil, nil }); err != nil {
		return addr, fmt.Errorf("interface %s did not appear within %v (interfaces: %s): the VM has no virtio-net device or the virtio_net module is missing; use --network none for a guest without a network", n.Interface, linkWait, strings.Join(interfaces(st), ", "))
	}
	if err := st.Sys.ConfigureLink(n.Interface, addr, gw); err != nil {
		return addr, fmt.Errorf("configure %s: %w", n.Interface, err)
	}
	return addr, nil
}

// HostsFile is the /etc/hosts the container sees, as docker writes it: localhost, the IPv6
// well-known names and, on a network, the guest's address with the host name.
func HostsFile(hostname string, addr netip.Prefix) string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	if hostname != "" && addr.IsValid() {
		fmt.Fprintf(&b, "%s\t%s\n", addr.Addr(), hostname)
	}
	return b.String()
}

// ResolvConf is the /etc/resolv.conf the container sees.
func ResolvConf(dns []string) string {
	var b strings.Builder
	for _, d := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	return b.String()
}

// interfaces lists the guest's network interfaces, for error messages.
func interfaces(st *State) []string {
	entries, err := st.Sys.ReadDir("/sys/class/net")
	if err != nil {
		return []string{"none"}
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}
