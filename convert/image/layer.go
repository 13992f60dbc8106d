package image

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/c2vm/c2vm/internal/decompress"
)

// OpenLayer returns the uncompressed tar stream of layer i. It decompresses in one pass while
// verifying the compressed blob's size and digest and the uncompressed diff_id; a mismatch is
// returned by Read in place of io.EOF, so a caller that reads to EOF always sees it. Errors name the
// layer digest. Close the reader when done; it does not close the image.
func (img *Image) OpenLayer(ctx context.Context, i int) (io.ReadCloser, error) {
	if i < 0 || i >= len(img.Layers) {
		return nil, fmt.Errorf("layer index %d out of range (image has %d layers)", i, len(img.Layers))
	}
	l := img.Layers[i]
	if img.store == nil {
		return nil, fmt.Errorf("layer %s: image is closed", l.Desc.Digest)
	}
	comp, err := LayerCompression(l.Desc.MediaType)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.Desc.Digest, err)
	}
	if err := l.Desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.Desc.Digest, err)
	}
	if err := l.DiffID.Validate(); err != nil {
		return nil, fmt.Errorf("layer %s: diff_id %q: %w", l.Desc.Digest, l.DiffID, err)
	}
	blob, size, err := img.store.open(img.paths[i])
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.Desc.Digest, err)
	}
	if size != l.Desc.Size {
		blob.Close()
		return nil, fmt.Errorf("layer %s: size mismatch: blob %s in %s is %d bytes, the manifest says %d; the image is corrupt",
			l.Desc.Digest, img.paths[i], img.store.where(), size, l.Desc.Size)
	}
	raw := &blobVerifier{ctx: ctx, r: bufio.NewReaderSize(blob, 1<<20), layer: l.Desc.Digest, want: l.Desc.Digest, size: size,
		h: l.Desc.Digest.Algorithm().Hash(), progress: img.progress}
	dec, err := decompress.NewReader(raw, comp.format(), layerLimits)
	if err != nil {
		blob.Close()
		return nil, fmt.Errorf("layer %s: %s: %w", l.Desc.Digest, comp, err)
	}
	return &layerReader{layer: l, comp: comp, raw: raw, dec: dec, blob: blob, h: l.DiffID.Algorithm().Hash()}, nil
}

// maxZstdWindow is the largest window a zstd frame may ask for: the zstd CLI's default limit
// (frames made with --long=28 or more need --memory to decode there too).
const maxZstdWindow = 128 << 20

// errZstdWindow explains zstd.ErrWindowSizeExceeded.
var errZstdWindow = fmt.Sprintf("zstd frame asks for a window over the %d MiB limit", maxZstdWindow>>20)

// layerLimits bound a layer's decompressor. MaxMemory bounds the decoded output of one zstd frame,
// not the window the frame asks for; MaxWindow does (a frame asking for more fails with
// zstd.ErrWindowSizeExceeded).
var layerLimits = decompress.Options{MaxMemory: 1 << 30, MaxWindow: maxZstdWindow}

// blobVerifier reads a compressed blob, hashing and counting it; at its end it checks size and
// digest and returns a mismatch in place of io.EOF.
type blobVerifier struct {
	ctx         context.Context
	r           io.Reader
	layer, want digest.Digest
	size, n     int64
	h           hash.Hash
	progress    func(digest.Digest, int64)
	err         error
}

func (v *blobVerifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if err := v.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if n > 0 && v.progress != nil {
		v.progress(v.layer, v.n)
	}
	if err == io.EOF {
		err = v.finish()
	}
	if err != nil {
		v.err = err
	}
	return n, err
}

func (v *blobVerifier) finish() error {
	if v.n != v.size {
		return fmt.Errorf("layer %s: size mismatch: read %d bytes, the manifest says %d", v.layer, v.n, v.size)
	}
	if got := digest.NewDigest(v.want.Algorithm(), v.h); got != v.want {
		return fmt.Errorf("layer %s: digest mismatch: blob has %s; the image is corrupt", v.layer, got)
	}
	return io.EOF
}

// layerReader yields the decompressed stream, hashing it for the diff_id. At the decompressor's
// end it drains the compressed blob (so its digest is checked) and compares the diff_id.
type layerReader struct {
	layer Layer
	comp  Compression
	raw   *blobVerifier
	dec   io.ReadCloser
	blob  io.Closer
	h     hash.Hash
	err   error
}

func (r *layerReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.dec.Read(p)
	r.h.Write(p[:n])
	switch {
	case err == io.EOF:
		err = r.finish()
	case err != nil:
		err = r.wrap(err)
	}
	if err != nil {
		r.err = err
	}
	return n, err
}

// wrap names the layer in a read error unless the verifier already did.
func (r *layerReader) wrap(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("layer %s: %w", r.layer.Desc.Digest, err)
	}
	// A corrupt blob usually trips the decompressor first; read the rest so a digest mismatch,
	// the root cause, is what gets reported.
	if r.raw.err == nil {
		io.Copy(io.Discard, r.raw)
	}
	if r.raw.err != nil && r.raw.err != io.EOF {
		return r.raw.err
	}
	if err == io.ErrUnexpectedEOF {
		return fmt.Errorf("layer %s: %s stream is truncated: %w", r.layer.Desc.Digest, r.comp, err)
	}
	if errors.Is(err, zstd.ErrWindowSizeExceeded) {
		return fmt.Errorf("layer %s: %s: %w", r.layer.Desc.Digest, errZstdWindow, err)
	}
	return fmt.Errorf("layer %s: %s: %w", r.layer.Desc.Digest, r.comp, err)
}

func (r *layerReader) finish() error {
	rest, err := io.Copy(io.Discard, r.raw)
	if err != nil {
		return r.wrap(err)
	}
	if rest > 0 && r.comp != Uncompressed {
		return fmt.Errorf("layer %s: %d bytes of trailing data after the %s stream", r.layer.Desc.Digest, rest, r.comp)
	}
	if got := digest.NewDigest(r.layer.DiffID.Algorithm(), r.h); got != r.layer.DiffID {
		return fmt.Errorf("layer %s: diff_id mismatch: uncompressed content has %s, the config says %s; the image is corrupt",
			r.layer.Desc.Digest, got, r.layer.DiffID)
	}
	return io.EOF
}

func (r *layerReader) Close() error {
	r.dec.Close()
	return r.blob.Close()
}
