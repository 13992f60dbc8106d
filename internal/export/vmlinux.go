package export

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/c2vm/c2vm/internal/decompress"
)

// kernelFormats are the compressions Vmlinux reads: those of x86 kernels built with
// CONFIG_KERNEL_{LZ4,GZIP,ZSTD,XZ}.
var kernelFormats = []decompress.Format{decompress.Lz4, decompress.Gzip, decompress.Zstd, decompress.Xz}

// maxVmlinux bounds the uncompressed kernel (Debian's cloud vmlinux is ~53 MB).
const maxVmlinux = 512 << 20

// Vmlinux extracts the uncompressed ELF kernel from an x86 bzImage: the payload its setup header
// points at (payload_offset/payload_length, boot protocol 2.08+), decompressed by its magic, the
// decompressed size being the payload's last four bytes. It checks that the result is an ELF
// with a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), what Firecracker and Cloud Hypervisor boot.
func Vmlinux(bzImage string) ([]byte, error) {
	b, err := os.ReadFile(bzImage)
	if err != nil {
		return nil, err
	}
	payload, err := bzPayload(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bzImage, err)
	}
	out, err := decompressKernel(payload)
	if err != nil {
		return nil, fmt.Errorf("%s: decompress the kernel: %w", bzImage, err)
	}
	if err := checkPVH(out); err != nil {
		return nil, fmt.Errorf("%s: %w", bzImage, err)
	}
	return out, nil
}

// bzPayload returns the compressed kernel inside a bzImage.
func bzPayload(b []byte) ([]byte, error) {
	if len(b) < 0x250 || string(b[0x202:0x206]) != "HdrS" {
		return nil, errors.New("not an x86 bzImage (no HdrS setup header)")
	}
	if binary.LittleEndian.Uint16(b[0x206:]) < 0x208 {
		return nil, errors.New("boot protocol before 2.08: no payload offset in the setup header")
	}
	setup := int(b[0x1f1])
	if setup == 0 {
		setup = 4
	}
	start := int64((setup+1)*512) + int64(binary.LittleEndian.Uint32(b[0x248:]))
	n := int64(binary.LittleEndian.Uint32(b[0x24c:]))
	if n < 8 || start+n > int64(len(b)) {
		return nil, fmt.Errorf("payload %d+%d is outside the %d-byte image", start, n, len(b))
	}
	return b[start : start+n], nil
}

func decompressKernel(p []byte) ([]byte, error) {
	size := int64(binary.LittleEndian.Uint32(p[len(p)-4:]))
	if size <= 0 || size > maxVmlinux {
		return nil, fmt.Errorf("implausible kernel size %d", size)
	}
	format := decompress.Detect(p)
	if !slices.Contains(kernelFormats, format) {
		return nil, fmt.Errorf("unknown compression (magic % x): lz4, gzip, zstd and xz are supported", p[:4])
	}
	r, err := decompress.NewReader(bytes.NewReader(p), format, decompress.Options{MaxMemory: maxVmlinux})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out bytes.Buffer
	out.Grow(int(size))
	if _, err := io.CopyN(&out, r, size); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// xenElfnotePhys32Entry is the ELF note type of the PVH entry point.
const xenElfnotePhys32Entry = 18

// checkPVH requires an ELF with a "Xen" note of type XEN_ELFNOTE_PHYS32_ENTRY.
func checkPVH(b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("the decompressed kernel is not an ELF: %w", err)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			return fmt.Errorf("read ELF notes: %w", err)
		}
		if hasNote(data, f.ByteOrder, "Xen", xenElfnotePhys32Entry) {
			return nil
		}
	}
	return errors.New("the kernel has no PVH entry note (CONFIG_PVH): Firecracker and Cloud Hypervisor cannot boot it")
}

// hasNote walks ELF notes (namesz, descsz, type, name, desc; 4-byte aligned).
func hasNote(data []byte, bo binary.ByteOrder, name string, typ uint32) bool {
	for len(data) >= 12 {
		nsz, dsz, t := bo.Uint32(data), bo.Uint32(data[4:]), bo.Uint32(data[8:])
		rest := data[12:]
		nlen, dlen := align4(nsz), align4(dsz)
		if uint64(len(rest)) < uint64(nlen)+uint64(dlen) {
			return false
		}
		if t == typ && string(bytes.TrimRight(rest[:nsz], "\x00")) == name {
			return true
		}
		data = rest[nlen+dlen:]
	}
	return false
}

func align4(n uint32) uint32 { return (n + 3) &^ 3 }
