package kmod

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/c2vm/c2vm/internal/decompress"
)

// maxModuleSize bounds how much of a compressed module is decompressed into memory.
const maxModuleSize = 256 << 20

// Depends reads the depends= field of a module's .modinfo ELF section and returns the normalised
// names it lists (nil when the module depends on nothing). Modules compressed with xz, zstd or
// gzip (.ko.xz, .ko.zst, .ko.gz) are decompressed in memory first.
func Depends(koPath string) ([]string, error) {
	info, err := Modinfo(koPath)
	if err != nil {
		return nil, err
	}
	var deps []string
	for _, v := range info["depends"] {
		for _, d := range strings.Split(v, ",") {
			if d = strings.TrimSpace(d); d != "" {
				deps = append(deps, NormName(d))
			}
		}
	}
	return deps, nil
}

// Modinfo returns all key=value fields of a module's .modinfo section; a key may repeat (alias=).
func Modinfo(koPath string) (map[string][]string, error) {
	r, closeFn, err := openModule(koPath)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", koPath, err)
	}
	defer closeFn()
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", koPath, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s: no .modinfo section", koPath)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: .modinfo: %w", koPath, err)
	}
	return parseModinfo(data), nil
}

// parseModinfo splits a .modinfo section: NUL-separated "key=value" strings, possibly padded
// with extra NULs.
func parseModinfo(data []byte) map[string][]string {
	info := make(map[string][]string)
	for _, field := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(field), "=")
		if !ok || k == "" {
			continue
		}
		info[k] = append(info[k], v)
	}
	return info
}

// openModule returns a ReaderAt over the (decompressed) module and a function that releases it.
func openModule(p string) (io.ReaderAt, func(), error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	format, compressed := decompress.ByExt(p)
	if !compressed {
		return f, func() { f.Close() }, nil
	}
	dec, err := decompress.NewReader(f, format, decompress.Options{})
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("decompress: %w", err)
	}
	defer dec.Close()
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(dec, maxModuleSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("decompress: %w", err)
	}
	if len(data) > maxModuleSize {
		return nil, nil, fmt.Errorf("decompressed module larger than %d bytes", maxModuleSize)
	}
	return bytes.NewReader(data), func() {}, nil
}
