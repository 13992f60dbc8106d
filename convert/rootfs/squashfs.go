package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/c2vm/c2vm/convert/flatten"
)

// errNoMksquashfs is returned when mksquashfs is not on PATH.
var errNoMksquashfs = errors.New("mksquashfs not found: install Debian package squashfs-tools (4.5 or later)")

// sqfsCompression maps Options.Compression to mksquashfs arguments. zstd runs at level 3: on this
// kind of machine ~12x faster than its default 15 for an image under 1% larger. (sqfstar 4.5.1, the
// same tar reader, rejects every -X option — squashfs-tools issue #191 — hence `mksquashfs -tar`.)
var sqfsCompression = map[string][]string{
	"":     {"-comp", "zstd", "-Xcompression-level", "3"},
	"zstd": {"-comp", "zstd", "-Xcompression-level", "3"},
	"gzip": {"-comp", "gzip"},
	"lz4":  {"-comp", "lz4"},
	"xz":   {"-comp", "xz"},
	"none": {"-noI", "-noD", "-noF", "-noX"},
}

// writeSquashfs pipes the tree's canonical tar stream into `mksquashfs - OUT -tar` (what sqfstar
// is; below "sqfstar" means that tar reader). The stream already respects
// sqfstar 4.5.1's quirks: no duplicate names (it keeps the first), every hardlink after its target
// (it crashes otherwise), no "./" entry (it ignores it). The root's mode goes on the command line
// (sqfstar makes it 0777 otherwise); sqfstar 4.5.1 ignores -root-uid and -root-gid (passed anyway
// for later versions), so there the root directory is owned by 0:0.
//
// The filesystem time and the root directory's mtime are max(mtime, newest mtime in the tree)
// (see sqfstarEnv); with a tree mtime in the future (after the wall clock) sqfstar stamps the
// root with the current time and the image is not reproducible.
func writeSquashfs(ctx context.Context, img *image, out, comp string, mtime int64) error {
	compArgs, ok := sqfsCompression[comp]
	if level, isZstd := strings.CutPrefix(comp, "zstd:"); isZstd {
		n, err := strconv.Atoi(level)
		ok = err == nil && n >= 1 && n <= 22
		compArgs = []string{"-comp", "zstd", "-Xcompression-level", level}
	}
	if !ok {
		return fmt.Errorf("unknown squashfs compression %q (want zstd (level 3), zstd:1 to zstd:22, gzip, lz4, xz or none)", comp)
	}
	if err := checkSquashfsLinks(img); err != nil {
		return err
	}
	bin, err := exec.LookPath("mksquashfs")
	if err != nil {
		return errNoMksquashfs
	}
	if err := os.Remove(out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, sqfstarArgs(img, out, compArgs)...)
	cmd.Env = sqfstarEnv(os.Environ(), sqfsEpoch(img, mtime))
	cmd.SysProcAttr = rootMapping(ctx, bin)
	cmd.WaitDelay = 10 * time.Second
	stderr := &tailBuffer{max: 4096}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mksquashfs: %w", err)
	}
	pipe := &pipeWriter{w: stdin}
	done := make(chan error, 1)
	go func() {
		err := img.src.WriteTar(ctx, pipe)
		if cerr := stdin.Close(); err == nil && cerr != nil && !errors.Is(cerr, os.ErrClosed) {
			err = cerr
		}
		done <- err
	}()
	waitErr := cmd.Wait()
	tarErr := <-done
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case tarErr != nil && pipe.failed() == nil:
		// The tree failed, not the pipe: that is the cause, whatever sqfstar made of the short input.
		return fmt.Errorf("write tar stream: %w", tarErr)
	case waitErr != nil:
		return fmt.Errorf("mksquashfs: %w: %s", waitErr, stderr.lastLine())
	case tarErr != nil:
		return fmt.Errorf("write tar stream: %w", tarErr)
	}
	return nil
}

// checkSquashfsLinks refuses a symlink whose long or non-ASCII target must travel in a PAX record
// (it has xattrs, which only PAX carries): mksquashfs 4.5.1 would drop the target's leading "/" or
// "../" (see flatten.GNULink). Linux allows only trusted.* and security.* xattrs on symlinks, so
// real images hardly ever have one.
func checkSquashfsLinks(img *image) error {
	for _, e := range img.entries {
		if e.Type == tar.TypeSymlink && flatten.LongLink(e) && !flatten.GNULink(e) {
			return fmt.Errorf("symlink %s has xattrs and a long or non-ASCII target, which mksquashfs 4.5.1 cannot keep intact: use --rootfs-format erofs", e.Path)
		}
	}
	return nil
}

func sqfstarArgs(img *image, out string, compArgs []string) []string {
	args := []string{"-", out, "-tar",
		"-quiet", "-no-progress", "-reproducible", "-exit-on-error", "-xattrs",
		"-root-mode", strconv.FormatInt(img.root.Mode&0o7777, 8),
		"-root-uid", strconv.Itoa(img.root.UID),
		"-root-gid", strconv.Itoa(img.root.GID),
	}
	return append(args, compArgs...)
}

// sqfstarEnv returns env with SOURCE_DATE_EPOCH set to epoch, the only way to fix sqfstar
// 4.5.1's timestamps: it ignores -root-time and stamps the root with the current time, and
// refuses -mkfs-time together with SOURCE_DATE_EPOCH. epoch is at least the newest mtime in the
// tree, because sqfstar clamps newer file times to it.
func sqfstarEnv(env []string, epoch int64) []string {
	var kept []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "SOURCE_DATE_EPOCH=") {
			kept = append(kept, kv)
		}
	}
	return append(kept, "SOURCE_DATE_EPOCH="+strconv.FormatInt(epoch, 10))
}

// sqfsEpoch is max(mkfs time, root and entry mtimes), clamped to squashfs' 32-bit times.
func sqfsEpoch(img *image, mtime int64) int64 {
	newest := max(mtime, img.root.ModTime.Unix())
	for _, e := range img.entries {
		newest = max(newest, e.ModTime.Unix())
	}
	return clamp32(newest)
}

func clamp32(n int64) int64 { return max(0, min(n, 1<<32-1)) }

// pipeWriter records whether writing to the child's stdin failed (the child exited early).
type pipeWriter struct {
	w   io.Writer
	mu  sync.Mutex
	err error
}

func (p *pipeWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if err != nil {
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
	}
	return n, err
}

func (p *pipeWriter) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// lastLine returns the last non-empty line written, or a note that there was none.
func (t *tailBuffer) lastLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(t.b)), "\n")
	if last := strings.TrimSpace(lines[len(lines)-1]); last != "" {
		return last
	}
	return "(no output)"
}
