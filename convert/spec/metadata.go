package spec

import (
	"maps"
	"slices"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DefaultStopSignal is the stop signal when the image sets none.
const DefaultStopSignal = "SIGTERM"

// Metadata the later stages need, taken from the image config.
type Metadata struct {
	ExposedPorts []string          // sorted, e.g. "80/tcp"
	Volumes      []string          // sorted
	Labels       map[string]string // nil when the image has none
	StopSignal   string            // "" in the image → "SIGTERM"
}

// ImageMetadata returns the image config's ports, volumes, labels and stop signal.
func ImageMetadata(img ocispec.Image) Metadata {
	c := img.Config
	m := Metadata{
		ExposedPorts: slices.Sorted(maps.Keys(c.ExposedPorts)),
		Volumes:      slices.Sorted(maps.Keys(c.Volumes)),
		Labels:       maps.Clone(c.Labels),
		StopSignal:   c.StopSignal,
	}
	if m.StopSignal == "" {
		m.StopSignal = DefaultStopSignal
	}
	return m
}
