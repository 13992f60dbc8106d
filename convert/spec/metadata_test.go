package spec

import (
	"maps"
	"slices"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestImageMetadata(t *testing.T) {
	m := ImageMetadata(testImage())
	if want := []string{"443/tcp", "53/udp", "8080/tcp"}; !slices.Equal(m.ExposedPorts, want) {
		t.Errorf("ports = %q, want %q", m.ExposedPorts, want)
	}
	if want := []string{"/data", "/var/lib/app"}; !slices.Equal(m.Volumes, want) {
		t.Errorf("volumes = %q, want %q", m.Volumes, want)
	}
	if want := map[string]string{"org.opencontainers.image.title": "app"}; !maps.Equal(m.Labels, want) {
		t.Errorf("labels = %v, want %v", m.Labels, want)
	}
	if m.StopSignal != "SIGQUIT" {
		t.Errorf("stop signal = %q, want SIGQUIT", m.StopSignal)
	}

	empty := ImageMetadata(ocispec.Image{})
	if empty.StopSignal != "SIGTERM" || empty.ExposedPorts != nil || empty.Volumes != nil || empty.Labels != nil {
		t.Errorf("empty config metadata = %+v, want only StopSignal SIGTERM", empty)
	}
}

func TestImageMetadataLabelsCopied(t *testing.T) {
	img := testImage()
	m := ImageMetadata(img)
	m.Labels["x"] = "y"
	if _, ok := img.Config.Labels["x"]; ok {
		t.Error("Metadata.Labels aliases the image config's map")
	}
}
