package kernel

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/c2vm/c2vm/internal/fileutil"
)

// fromDeb unpacks a kernel package into the cache (once) and returns the kernel in it. For a
// metapackage it uses the kernel package it depends on when that .deb lies beside it.
func fromDeb(ctx context.Context, deb string, opts Options) (*Kernel, error) {
	return fromDebHop(ctx, deb, opts, true)
}

// fromDebHop is fromDeb; followMeta says whether a metapackage may lead to another package. Only
// one hop is allowed: a metapackage whose dependency is itself a metapackage is an error, so
// packages naming each other cannot recurse forever.
func fromDebHop(ctx context.Context, deb string, opts Options, followMeta bool) (*Kernel, error) {
	cache, err := opts.cacheDir()
	if err != nil {
		return nil, err
	}
	sum, err := fileSHA256(deb)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cache.UnpackedKernels(), sum)
	if _, err := os.Stat(dir); err != nil {
		if err := unpackDeb(ctx, deb, dir); err != nil {
			return nil, err
		}
	}
	k, err := fromDir(dir)
	if errors.Is(err, errNoVmlinuz) {
		if !followMeta {
			return nil, fmt.Errorf("%s holds no boot/vmlinuz-*: a metapackage may only name a kernel package, "+
				"not another metapackage", filepath.Base(deb))
		}
		return fromMetapackage(ctx, deb, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("unpacked in %s: %w", dir, err)
	}
	k.Package = filepath.Base(deb)
	return k, nil
}

// unpackDeb extracts the kernel and modules of deb into dir atomically: into a stage beside dir,
// renamed at the end. A concurrent unpack of the same package is fine: the first one is kept.
func unpackDeb(ctx context.Context, deb, dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create kernel cache: %w", err)
	}
	keep := func(string) bool { return true } // another process unpacked it first
	var extractErr error
	err := fileutil.AtomicDir(dir, fileutil.AtomicDirOptions{Keep: keep}, func(tmp string) error {
		extractErr = extractDeb(ctx, deb, tmp)
		return extractErr
	})
	switch {
	case extractErr != nil:
		return extractErr
	case err != nil:
		return fmt.Errorf("store unpacked kernel: %w", err)
	}
	return nil
}

func extractDeb(ctx context.Context, deb, dst string) error {
	f, err := os.Open(deb)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	members, err := readAr(f, fi.Size())
	if err != nil {
		return err
	}
	data, ok := member(members, "data.tar")
	if !ok {
		return errors.New("not a Debian package: no data.tar member")
	}
	tr, closeFn, err := openTar(data)
	if err != nil {
		return err
	}
	defer closeFn()
	if err := ctx.Err(); err != nil {
		return err
	}
	return extractTar(tr, dst)
}

// fromMetapackage handles a package without a kernel image: it names the kernel package it
// depends on and uses that .deb when it lies beside the metapackage.
func fromMetapackage(ctx context.Context, deb string, opts Options) (*Kernel, error) {
	ctl, err := readControl(deb)
	if err != nil {
		return nil, err
	}
	dep := kernelDependency(ctl["Depends"])
	if dep == "" {
		return nil, fmt.Errorf("package %s holds no boot/vmlinuz-* and depends on no linux-image-* package", ctl["Package"])
	}
	matches, err := filepath.Glob(filepath.Join(filepath.Dir(deb), globEscape(dep)+"_*.deb"))
	if err != nil {
		return nil, err
	}
	if len(matches) == 0 {
		return nil, fmt.Errorf("%s is a metapackage without a kernel image: download the kernel package it depends on, "+
			"e.g. `apt-get download %s`, and put it beside it (or pass that .deb)", ctl["Package"], dep)
	}
	real := matches[len(matches)-1]
	for _, m := range matches {
		if compareNatural(m, real) > 0 {
			real = m
		}
	}
	if ok, _ := hasArMagic(real); !ok || real == deb {
		return nil, fmt.Errorf("%s: not a kernel package", real)
	}
	k, err := fromDebHop(ctx, real, opts, false)
	if err != nil {
		return nil, fmt.Errorf("%s (the kernel package of metapackage %s): %w", real, ctl["Package"], err)
	}
	return k, nil
}

// kernelDependency picks the first linux-image-* package from a Depends field such as
// "linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)".
func kernelDependency(depends string) string {
	for _, alt := range strings.FieldsFunc(depends, func(r rune) bool { return r == ',' || r == '|' }) {
		name, _, _ := strings.Cut(strings.TrimSpace(alt), " ")
		name, _, _ = strings.Cut(name, ":")
		if strings.HasPrefix(name, "linux-image-") {
			return name
		}
	}
	return ""
}

// readControl returns the fields of a package's control file (continuation lines are dropped).
func readControl(deb string) (map[string]string, error) {
	f, err := os.Open(deb)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	members, err := readAr(f, fi.Size())
	if err != nil {
		return nil, err
	}
	m, ok := member(members, "control.tar")
	if !ok {
		return nil, errors.New("not a Debian package: no control.tar member")
	}
	tr, closeFn, err := openTar(m)
	if err != nil {
		return nil, err
	}
	defer closeFn()
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("%s: no control file: %w", m.Name, err)
		}
		if filepath.Clean(strings.TrimPrefix(h.Name, "./")) == "control" {
			return parseControl(io.LimitReader(tr, 1<<20))
		}
	}
}

func parseControl(r io.Reader) (map[string]string, error) {
	fields := make(map[string]string)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields, sc.Err()
}

func globEscape(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `\`, `\\`)
	return r.Replace(s)
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
