package bundle

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// Stage is a bundle under construction in a temporary directory beside its target.
type Stage struct {
	Dir    string // the temporary directory; write the bundle's files here
	target string
}

// NewStage creates the temporary directory for a bundle that will end up at target. The parent of
// target must exist. Stale stages of earlier, killed conversions to target are removed first (see
// removeStaleStages).
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
	removeStaleStages(target, time.Now())
	dir, err := os.MkdirTemp(parent, stagePrefix(target)+strconv.Itoa(os.Getpid())+"-")
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
	if err := os.Chmod(s.Dir, 0o755); err != nil {
		return fmt.Errorf("output %s: %w", s.target, err)
	}
	if err := s.sync(); err != nil {
		return fmt.Errorf("output %s: %w", s.target, err)
	}
	if err := s.replace(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(s.target))
}

// replaceable reports whether an existing target may be replaced: an empty directory or a bundle.
func replaceable(target string) bool {
	if ents, err := os.ReadDir(target); err == nil && len(ents) == 0 {
		return true
	}
	_, err := Read(target)
	return err == nil
}

// sync flushes every file of the stage and the stage directory, so that after the rename a crash
// cannot leave bundle.json beside truncated files.
func (s *Stage) sync() error {
	ents, err := os.ReadDir(s.Dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := syncPath(s.Path(e.Name())); err != nil {
			return err
		}
	}
	return syncDir(s.Dir)
}

func syncDir(dir string) error { return syncPath(dir) }

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
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

// replace renames the stage onto the target. An existing target is first moved aside and removed
// only once the new bundle is in place.
func (s *Stage) replace() error {
	if _, err := os.Lstat(s.target); err == nil && !replaceable(s.target) { // checked in NewStage too; the directory may have changed since
		return fmt.Errorf("output %s exists and is not a c2vm bundle: remove it or choose another -o", s.target)
	}
	if err := ReplaceDir(s.Dir, s.target); err != nil {
		return err
	}
	s.Dir = ""
	return nil
}

// ReplaceDir renames the directory dir onto target. An existing target is first moved aside and
// removed only once dir is in place (put back if the rename fails).
func ReplaceDir(dir, target string) error {
	old := ""
	if _, err := os.Lstat(target); err == nil {
		old = dir + ".old"
		if err := os.Rename(target, old); err != nil {
			return fmt.Errorf("replace %s: %w", target, err)
		}
	}
	if err := os.Rename(dir, target); err != nil {
		if old != "" {
			_ = os.Rename(old, target)
		}
		return fmt.Errorf("rename into %s: %w", target, err)
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}
