package kernel

import (
	"fmt"
	"io"
	"os"

	"github.com/c2vm/c2vm/internal/decompress"
)

// Arch returns the GOARCH a kernel image is for: an x86 bzImage (the "HdrS" setup header) is
// amd64, an arm64 Image ("ARM\x64" at 0x38, also inside a gzip-compressed vmlinuz) is arm64.
func Arch(vmlinuz string) (string, error) {
	f, err := os.Open(vmlinuz)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 4096)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if decompress.Detect(head) == decompress.Gzip {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return "", err
		}
		zr, err := decompress.NewReader(f, decompress.Gzip, decompress.Options{})
		if err != nil {
			return "", fmt.Errorf("kernel %s: %w", vmlinuz, err)
		}
		defer zr.Close()
		head = make([]byte, 4096)
		n, _ = io.ReadFull(zr, head)
		head = head[:n]
	}
	switch {
	case len(head) >= 0x206 && string(head[0x202:0x206]) == "HdrS":
		return "amd64", nil
	case len(head) >= 0x3c && string(head[0x38:0x3c]) == "ARM\x64":
		return "arm64", nil
	}
	return "", fmt.Errorf("kernel %s: neither an x86 bzImage nor an arm64 Image", vmlinuz)
}
