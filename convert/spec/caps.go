package spec

import (
	"fmt"
	"slices"
	"strings"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// allCaps is every capability the kernel headers c2vm knows name, as CAP_NAME.
func allCaps() []string {
	var out []string
	for _, c := range capability.ListKnown() {
		out = append(out, "CAP_"+strings.ToUpper(c.String()))
	}
	return out
}

// normalizeCap turns docker's spellings (net_raw, NET_RAW, CAP_NET_RAW, ALL) into CAP_NET_RAW or
// ALL, refusing names the kernel does not have.
func normalizeCap(s string) (string, error) {
	c := strings.ToUpper(strings.TrimSpace(s))
	if c == "ALL" {
		return c, nil
	}
	if !strings.HasPrefix(c, "CAP_") {
		c = "CAP_" + c
	}
	if !slices.Contains(allCaps(), c) {
		return "", fmt.Errorf("unknown capability: %q", s)
	}
	return c, nil
}

// tweakCaps applies --cap-add and --cap-drop as docker does: start from the defaults (nothing
// when ALL is dropped, everything when ALL is added), add, then drop; the bounding, effective and
// permitted sets all get the result.
func tweakCaps(p *specs.Process, add, drop []string) error {
	if len(add) == 0 && len(drop) == 0 {
		return nil
	}
	norm := func(in []string) ([]string, error) {
		var out []string
		for _, s := range in {
			c, err := normalizeCap(s)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		return out, nil
	}
	adds, err := norm(add)
	if err != nil {
		return err
	}
	drops, err := norm(drop)
	if err != nil {
		return err
	}
	var caps []string
	if p.Capabilities != nil {
		caps = append(caps, p.Capabilities.Bounding...)
	}
	switch {
	case slices.Contains(adds, "ALL"):
		caps = allCaps()
	case slices.Contains(drops, "ALL"):
		caps = nil
	}
	for _, c := range adds {
		if c != "ALL" && !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	caps = slices.DeleteFunc(caps, func(c string) bool { return slices.Contains(drops, c) && !slices.Contains(adds, c) })
	slices.Sort(caps)
	p.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	return nil
}
