package image

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// candidate is one single-platform image an archive offers. load reads and verifies its manifest
// and config.
type candidate struct {
	name     string
	digest   digest.Digest
	platform ocispec.Platform
	known    bool // platform is known
	load     func() (*Image, error)
}

// choose picks the candidate that best matches want (platforms.Only semantics, e.g. linux/amd64
// also accepts linux/386 but prefers amd64).
func choose(cands []candidate, want ocispec.Platform) (candidate, error) {
	m := platforms.Only(want)
	var matched []candidate
	for _, c := range cands {
		if c.known && m.Match(c.platform) {
			matched = append(matched, c)
		}
	}
	if len(matched) == 0 {
		return candidate{}, fmt.Errorf("no image for platform %s; available: %s; choose one with --platform",
			platforms.Format(want), availablePlatforms(cands))
	}
	sort.SliceStable(matched, func(i, j int) bool { return m.Less(matched[i].platform, matched[j].platform) })
	if len(matched) > 1 && !m.Less(matched[0].platform, matched[1].platform) && matched[0].digest != matched[1].digest {
		return candidate{}, fmt.Errorf("%w match platform %s: %s; name one of them", errAmbiguous,
			platforms.Format(want), listing(matched))
	}
	return matched[0], nil
}

func availablePlatforms(cands []candidate) string {
	var ps []string
	for _, c := range cands {
		if c.known {
			ps = append(ps, platforms.Format(c.platform))
		}
	}
	sort.Strings(ps)
	ps = slices.Compact(ps)
	if len(ps) == 0 {
		return "none (no manifest declares a platform)"
	}
	return strings.Join(ps, ", ")
}

// checkPlatform verifies that the platform an index declares agrees with the image config.
func checkPlatform(declared *ocispec.Platform, cfg ocispec.Image) (ocispec.Platform, error) {
	fromCfg := platforms.Normalize(cfg.Platform)
	if declared == nil || declared.OS == "" || declared.Architecture == "" {
		return fromCfg, nil
	}
	p := platforms.Normalize(*declared)
	// Variants are compared only when both sides state one: Normalize fills in a default for
	// some architectures (arm means arm/v7), which a config without a variant does not claim.
	variantDiffers := declared.Variant != "" && cfg.Variant != "" && p.Variant != fromCfg.Variant
	if p.OS != fromCfg.OS || p.Architecture != fromCfg.Architecture || variantDiffers {
		return p, fmt.Errorf("index declares platform %s but the config says %s",
			platforms.Format(p), platforms.Format(fromCfg))
	}
	return p, nil
}
