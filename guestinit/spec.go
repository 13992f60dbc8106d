package guestinit

import (
	"context"
	"encoding/json"
	"fmt"
	"path"

	"github.com/c2vm/c2vm/bootcfg"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SpecPatch says how the init adjusts the converter's runtime spec for the guest.
type SpecPatch struct {
	// EtcDir holds hosts, resolv.conf and hostname; each is bind-mounted onto /etc/<name>.
	EtcDir string
	// Hostname is set as the spec's hostname when the spec has a UTS namespace.
	Hostname string
	// HostNetwork drops the spec's network namespace so that the workload uses the interface the
	// init configured (the VM is the container's network sandbox).
	HostNetwork bool
	// Volumes are mounted into the container, replacing the spec's mounts at the same targets.
	Volumes []bootcfg.Volume
	// MemoryLimit (bytes) becomes the container cgroup's memory.max unless the spec has a lower
	// one; 0 leaves the spec's (see workloadMemoryLimit).
	MemoryLimit int64
}

var etcFiles = []string{"hosts", "resolv.conf", "hostname"}

// PatchSpec applies p to a runtime spec. Fields it does not touch, including ones this package
// does not know, are kept; the output is deterministic (sorted keys, indented).
func PatchSpec(data []byte, p SpecPatch) ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("runtime spec: %w", err)
	}
	if doc == nil {
		return nil, fmt.Errorf("runtime spec: not a JSON object")
	}
	var mounts []specs.Mount
	if err := unmarshalField(doc, "mounts", &mounts); err != nil {
		return nil, err
	}
	mounts = patchMounts(mounts, p.EtcDir, p.Volumes)
	if err := setField(doc, "mounts", mounts); err != nil {
		return nil, err
	}
	var root specs.Root
	if err := unmarshalField(doc, "root", &root); err != nil {
		return nil, err
	}
	root.Path = "rootfs"
	if err := setField(doc, "root", root); err != nil {
		return nil, err
	}
	if err := patchLinux(doc, p); err != nil {
		return nil, err
	}
	if err := patchOOMScore(doc); err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		return nil, fmt.Errorf("runtime spec: %w", err)
	}
	return append(out, '\n'), nil
}

// patchMounts replaces any mount on a volume target or the /etc files with the volumes, then binds
// of the guest's files, which go last so that they win over mounts of /etc itself.
func patchMounts(mounts []specs.Mount, etcDir string, vols []bootcfg.Volume) []specs.Mount {
	dests := map[string]bool{}
	for _, f := range etcFiles {
		dests["/etc/"+f] = true
	}
	for _, v := range vols {
		dests[v.Target] = true
	}
	var out []specs.Mount
	for _, m := range mounts {
		if !dests[path.Clean(m.Destination)] {
			out = append(out, m)
		}
	}
	out = append(out, volumeMounts(vols)...)
	for _, f := range etcFiles {
		out = append(out, specs.Mount{
			Destination: "/etc/" + f,
			Type:        "bind",
			Source:      path.Join(etcDir, f),
			Options:     []string{"rbind", "rprivate"},
		})
	}
	return out
}

func patchLinux(doc map[string]json.RawMessage, p SpecPatch) error {
	var linux map[string]json.RawMessage
	if err := unmarshalField(doc, "linux", &linux); err != nil {
		return err
	}
	if linux == nil {
		return nil
	}
	if err := patchMemoryLimit(linux, p.MemoryLimit); err != nil {
		return err
	}
	var nss []specs.LinuxNamespace
	if err := unmarshalField(linux, "namespaces", &nss); err != nil {
		return fmt.Errorf("linux.%w", err)
	}
	var kept []specs.LinuxNamespace
	uts := false
	for _, ns := range nss {
		if ns.Type == specs.NetworkNamespace && p.HostNetwork && ns.Path == "" {
			continue
		}
		uts = uts || ns.Type == specs.UTSNamespace
		kept = append(kept, ns)
	}
	if nss != nil {
		if err := setField(linux, "namespaces", kept); err != nil {
			return err
		}
	}
	if err := setField(doc, "linux", linux); err != nil {
		return err
	}
	if uts && p.Hostname != "" {
		return setField(doc, "hostname", p.Hostname)
	}
	return nil
}

func unmarshalField(doc map[string]json.RawMessage, key string, v any) error {
	raw, ok := doc[key]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("runtime spec: %s: %w", key, err)
	}
	return nil
}

func setField(doc map[string]json.RawMessage, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("runtime spec: %s: %w", key, err)
	}
	doc[key] = raw
	return nil
}

// stepSpec writes the patched runtime spec into the bundle dir.
func stepSpec(_ context.Context, st *State) error {
	c := st.Cfg.Container
	data, err := st.Sys.ReadFile(c.SpecPath)
	if err != nil {
		return fmt.Errorf("read runtime spec: %w", err)
	}
	meminfo, err := st.Sys.ReadFile("/proc/meminfo")
	if err != nil {
		st.Debugf("meminfo: %v", err)
	}
	st.MemoryLimit = workloadMemoryLimit(meminfo)
	out, err := PatchSpec(data, SpecPatch{
		EtcDir:      etcDir,
		Hostname:    st.Hostname,
		HostNetwork: st.Cfg.Network.Mode == bootcfg.NetworkStatic,
		Volumes:     c.Volumes,
		MemoryLimit: st.MemoryLimit,
	})
	if err != nil {
		return fmt.Errorf("%s: %w", c.SpecPath, err)
	}
	if st.Terminal, err = specTerminal(out); err != nil {
		return fmt.Errorf("%s: %w", c.SpecPath, err)
	}
	return st.Sys.WriteFile(path.Join(c.BundleDir, "config.json"), out, 0o644)
}
