package kernel

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/c2vm/c2vm/internal/cachedir"
	"github.com/c2vm/c2vm/internal/fileutil"
)

// A c2vm kernel travels through registries as an OCI 1.1 artifact: the Tree below is its config,
// each of its files a layer titled by its path in the tree. vmlinuz has the bundle artifact's
// kernel media type, so a registry holds the blob once for the kernel and every bundle made with
// it. The uncompressed vmlinux stays home: `c2vm export --runner firecracker` derives it from
// vmlinuz.
const (
	ArtifactType          = "application/vnd.c2vm.guest-kernel.v1"
	ArtifactConfigType    = "application/vnd.c2vm.guest-kernel.config.v1+json"
	VmlinuzMediaType      = "application/vnd.c2vm.kernel.v1"
	ConfigMediaType       = "application/vnd.c2vm.kernel.config.v1"
	ModulesBuiltinMedia   = "application/vnd.c2vm.kernel.modules-builtin.v1"
	treeSchemaVersion     = 1
	maxTreeFileSize       = 256 << 20
	pulledKernelDirPrefix = "pulled-"
)

// Tree describes a c2vm kernel directory: its version, architecture and the files that make it
// up (boot/vmlinuz-V, boot/config-V, lib/modules/V/modules.builtin).
type Tree struct {
	SchemaVersion int        `json:"schemaVersion"`
	Version       string     `json:"version"`
	Architecture  string     `json:"architecture"`
	OS            string     `json:"os"`
	Files         []TreeFile `json:"files"`
}

// TreeFile is one file of a Tree, by its slash path in the tree.
type TreeFile struct {
	Name      string `json:"name"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
}

var safeVersion = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+~-]*$`)

// treeFiles are the files of a kernel tree of version v, with their media types.
func treeFiles(v string) []TreeFile {
	return []TreeFile{
		{Name: "boot/vmlinuz-" + v, MediaType: VmlinuzMediaType},
		{Name: "boot/config-" + v, MediaType: ConfigMediaType},
		{Name: "lib/modules/" + v + "/modules.builtin", MediaType: ModulesBuiltinMedia},
	}
}

// TreeArches are the architectures a c2vm kernel exists for.
var TreeArches = []string{"amd64", "arm64"}

// DescribeTree reads the c2vm kernel at dir (as `make kernel-c2vm` or a pull leave it); its
// architecture is its image's, and must be arch unless arch is "".
func DescribeTree(dir, arch string) (*Tree, error) {
	k, err := fromDir(dir)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", dir, err)
	}
	got, err := Arch(k.Vmlinuz)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", dir, err)
	}
	if arch != "" && got != arch {
		return nil, fmt.Errorf("kernel %s: its image is for %s, not %s", dir, got, arch)
	}
	t := &Tree{SchemaVersion: treeSchemaVersion, Version: k.Version, Architecture: got, OS: "linux"}
	if err := t.checkVersion(); err != nil {
		return nil, fmt.Errorf("kernel %s: %w", dir, err)
	}
	for _, f := range treeFiles(k.Version) {
		if f.Size, f.SHA256, err = hashFile(filepath.Join(dir, filepath.FromSlash(f.Name))); err != nil {
			return nil, fmt.Errorf("kernel %s: %w (a c2vm kernel has %s)", dir, err, strings.Join(treeNames(k.Version), ", "))
		}
		t.Files = append(t.Files, f)
	}
	return t, nil
}

func treeNames(v string) []string {
	var names []string
	for _, f := range treeFiles(v) {
		names = append(names, f.Name)
	}
	return names
}

func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", path, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func (t *Tree) checkVersion() error {
	if !safeVersion.MatchString(t.Version) || strings.Contains(t.Version, "..") {
		return fmt.Errorf("kernel version %q is not a plain release name", t.Version)
	}
	return nil
}

// Check validates a Tree read from a registry: a known schema, a plain version, exactly the files
// of a c2vm kernel with well-formed digests and sane sizes, for arch when arch is not "".
func (t *Tree) Check(arch string) error {
	if t.SchemaVersion != treeSchemaVersion {
		return fmt.Errorf("kernel artifact schema version %d, this c2vm reads %d", t.SchemaVersion, treeSchemaVersion)
	}
	if err := t.checkVersion(); err != nil {
		return err
	}
	if !slices.Contains(TreeArches, t.Architecture) {
		return fmt.Errorf("kernel artifact architecture %q: c2vm kernels are %v", t.Architecture, TreeArches)
	}
	if arch != "" && t.Architecture != arch {
		return fmt.Errorf("kernel artifact is for %s, not %s", t.Architecture, arch)
	}
	want := treeFiles(t.Version)
	got := make([]string, 0, len(t.Files))
	for _, f := range t.Files {
		b, err := hex.DecodeString(f.SHA256)
		if err != nil || len(b) != sha256.Size || f.Size < 0 || f.Size > maxTreeFileSize {
			return fmt.Errorf("kernel artifact file %s: bad sha256 %q or size %d", f.Name, f.SHA256, f.Size)
		}
		got = append(got, f.Name)
	}
	if !slices.Equal(got, treeNames(t.Version)) {
		return fmt.Errorf("kernel artifact files %v are not a c2vm kernel's %v", got, treeNames(t.Version))
	}
	for i, f := range t.Files {
		if f.MediaType != want[i].MediaType {
			return fmt.Errorf("kernel artifact file %s has media type %q, want %q", f.Name, f.MediaType, want[i].MediaType)
		}
	}
	return nil
}

// C2VMKernelDir is where the c2vm kernel of arch lives in cacheDir: a symbolic link to the build
// (`make kernel-c2vm`) or the pulled artifact in use.
func C2VMKernelDir(cacheDir, arch string) string {
	return filepath.Join(cachedir.Dir(cacheDir).C2VMKernels(), arch)
}

// PulledDir is where a pulled kernel artifact is kept in cacheDir, by its manifest digest.
func PulledDir(cacheDir, manifestDigest string) string {
	return filepath.Join(cachedir.Dir(cacheDir).C2VMKernels(), pulledKernelDirPrefix+manifestDigest)
}

// Activate makes dir (directly in cacheDir's kernel-c2vm/) the c2vm kernel of arch (one of
// TreeArches), replacing the link atomically.
func Activate(cacheDir, arch, dir string) error {
	if !slices.Contains(TreeArches, arch) {
		return fmt.Errorf("activate kernel: architecture %q: c2vm kernels are %v", arch, TreeArches)
	}
	parent := cachedir.Dir(cacheDir).C2VMKernels()
	if filepath.Dir(dir) != parent {
		return fmt.Errorf("activate kernel: %s is not in %s", dir, parent)
	}
	if err := fileutil.ReplaceSymlink(filepath.Base(dir), C2VMKernelDir(cacheDir, arch)); err != nil {
		return fmt.Errorf("activate kernel: %w", err)
	}
	return nil
}
