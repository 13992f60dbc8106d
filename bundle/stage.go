package bundle

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/c2vm/c2vm/internal/fileutil"
)

// Stage is a bundle under construction in a temporary directory beside its target.
type Stage struct {
	Dir    string // the temporary directory; write the bundle's files here
	target string
}

// NewStage creates the temporary directory for a bundle that will end up at target. The parent of
// target must exist. The stage is a fileutil stage (.NAME.c2vm-tmp-PID-RANDOM beside target); stale
// stages of earlier, killed conversions to target are removed first (see fileutil.MkdirStage).
func NewStage(target string) (*Stage, error) {
	target = filepath.Clean(target)
	parent := filepath.Dir(target)
	if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("output %s: parent directory %s does not exist: create it first", target, parent)
	}
	if fi, err := os.Lstat(target); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("output %s exists and is not a directory: choose another -o", target)
	} else if err == nil && !replaceable(target) {
		return nil, fmt.Errorf("output %s exists and is not a c2vm bundle: remove it or choose another -o", target)
	}
	dir, err := fileutil.MkdirStage(target)
	if err != nil {
		return nil, fmt.Errorf("output %s: %w", target, err)
	}
	return &Stage{Dir: dir, target: target}, nil
}

// Path returns the path of name inside the stage.
func (s *Stage) Path(name string) string { return filepath.Join(s.Dir, name) }

// Commit writes bundle.json (with the digests of every other file in the stage) and renames the stage
// onto the target, replacing an existing bundle only at this last step.
func (s *Stage) Commit(m *Manifest) error {
	files, err := s.describeAll()
	if err != nil {
		return err
	}
	m.SchemaVersion = SchemaVersion
	m.Files = files
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.Path(ManifestFile), b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", ManifestFile, err)
	}
	return s.commit()
}

// replaceable reports whether an existing target may be replaced: an empty directory or a bundle.
func replaceable(target string) bool {
	if ents, err := os.ReadDir(target); err == nil && len(ents) == 0 {
		return true
	}
	_, err := Read(target)
	return err == nil
}

// Abort removes the stage. It is safe to call after Commit.
func (s *Stage) Abort() error {
	if s.Dir == "" {
		return nil
	}
	err := os.RemoveAll(s.Dir)
	s.Dir = ""
	return err
}

func (s *Stage) describeAll() ([]File, error) {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("read stage: %w", err)
	}
	var files []File
	for _, e := range ents {
		if e.Name() == ManifestFile || !e.Type().IsRegular() {
			continue
		}
		f, err := Describe(s.Path(e.Name()))
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, nil
}

// commit renames the stage onto the target, flushed first so that after the rename a crash
// cannot leave bundle.json beside truncated files. An existing target is moved aside and removed
// only once the new bundle is in place.
func (s *Stage) commit() error {
	if _, err := os.Lstat(s.target); err == nil && !replaceable(s.target) { // checked in NewStage too; the directory may have changed since
		return fmt.Errorf("output %s exists and is not a c2vm bundle: remove it or choose another -o", s.target)
	}
	if err := fileutil.CommitStage(s.Dir, s.target, fileutil.AtomicDirOptions{Sync: true}); err != nil {
		return fmt.Errorf("output %s: %w", s.target, err)
	}
	s.Dir = ""
	return nil
}
