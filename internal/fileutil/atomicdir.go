package fileutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A directory that must appear whole or not at all (a bundle, a bundle set, an unpacked kernel,
// a pull into the cache) is built in a stage: a hidden directory beside its target, named
// .NAME.c2vm-tmp-PID-RANDOM (PID: the building process), renamed onto the target at the end.
// While an existing target is replaced it is moved aside to the stage's name plus ".old".
// A process killed mid-way (SIGKILL, power loss) leaves these behind; MkdirStage removes the
// ones of the same target that are stale:
//
//   - the PID in the name is not a running process (kill(PID, 0) fails with ESRCH), or
//   - the stage was last modified more than StaleAge ago (a reused PID, a stage from another PID
//     namespace or host sharing the directory, or a name without a PID).
//
// A live stage of the same target is kept. Removal is best effort: a stage that cannot be removed
// (another user's) is left alone.

// StaleAge is the age after which a stage is stale whatever its PID.
const StaleAge = 24 * time.Hour

// StagePrefix is the name prefix of the stages of target.
func StagePrefix(target string) string {
	return "." + filepath.Base(filepath.Clean(target)) + ".c2vm-tmp-"
}

// MkdirStage removes the stale stages of target, then creates an empty stage for it (mode 0700)
// and returns its path. target's parent must exist.
func MkdirStage(target string) (string, error) {
	target = filepath.Clean(target)
	RemoveStaleStages(target, time.Now())
	return os.MkdirTemp(filepath.Dir(target), StagePrefix(target)+strconv.Itoa(os.Getpid())+"-")
}

// RemoveStaleStages removes the stale stages beside target (best effort).
func RemoveStaleStages(target string, now time.Time) {
	target = filepath.Clean(target)
	parent, prefix := filepath.Dir(target), StagePrefix(target)
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		fi, err := os.Lstat(p)
		if err != nil || !fi.IsDir() {
			continue
		}
		if staleStage(strings.TrimPrefix(e.Name(), prefix), fi.ModTime(), now) {
			_ = os.RemoveAll(p)
		}
	}
}

// staleStage reports whether a stage with name suffix rest ("PID-RANDOM[.old]") and modification
// time mtime is stale at now.
func staleStage(rest string, mtime, now time.Time) bool {
	if now.Sub(mtime) > StaleAge {
		return true
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(pidStr)
	if !ok || err != nil || pid <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// AtomicDirOptions tune AtomicDir and CommitStage. The zero value gives a 0755 directory that
// replaces whatever is at the target, without fsync.
type AtomicDirOptions struct {
	// Perm is the mode of the finished directory; 0 means 0o755.
	Perm os.FileMode
	// Sync flushes every file and directory of the new tree before the rename and the target's
	// parent after it, so that a crash cannot leave the target half-written.
	Sync bool
	// Keep is asked when the target exists once the new tree is built: true keeps the target
	// and drops the new tree (e.g. an intact copy a concurrent process put there first); false,
	// or a nil Keep, replaces it (ReplaceDir).
	Keep func(target string) bool
}

// AtomicDir builds target through fn, which fills the empty directory it is given (a stage beside
// target, see MkdirStage), then commits it (CommitStage). When fn or the commit fails the stage is
// removed and target is untouched. target's parent must exist.
func AtomicDir(target string, opts AtomicDirOptions, fn func(dir string) error) error {
	stage, err := MkdirStage(target)
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage) // gone after a commit, but for a kept target
	if err := fn(stage); err != nil {
		return err
	}
	return CommitStage(stage, target, opts)
}

// CommitStage puts the built stage in place at target, as opts say. It is AtomicDir's last step,
// for callers that hold a stage across several calls (bundle.Stage). After an error the stage is
// still there for the caller to remove.
func CommitStage(stage, target string, opts AtomicDirOptions) error {
	perm := opts.Perm
	if perm == 0 {
		perm = 0o755
	}
	if err := os.Chmod(stage, perm); err != nil {
		return err
	}
	if opts.Sync {
		if err := syncTree(stage); err != nil {
			return fmt.Errorf("sync %s: %w", stage, err)
		}
	}
	if opts.Keep != nil {
		err := os.Rename(stage, target)
		if err == nil {
			return syncParent(target, opts.Sync)
		}
		if _, serr := os.Lstat(target); serr != nil {
			return fmt.Errorf("rename into %s: %w", target, err)
		}
		if opts.Keep(target) {
			return nil
		}
	}
	if err := ReplaceDir(stage, target); err != nil {
		return err
	}
	return syncParent(target, opts.Sync)
}

// ReplaceDir renames the directory dir onto target. An existing target is first moved aside (to
// dir + ".old") and removed only once dir is in place (put back if the rename fails).
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

// ReplaceSymlink points the symbolic link at link to dest, replacing what is there in one
// rename: the new link is made in a stage beside link first.
func ReplaceSymlink(dest, link string) error {
	stage, err := MkdirStage(link)
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	next := filepath.Join(stage, "link")
	if err := os.Symlink(dest, next); err != nil {
		return err
	}
	return os.Rename(next, link)
}

// syncTree flushes every regular file and directory below root, root last.
func syncTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir():
			dirs = append(dirs, p)
			return nil
		case d.Type().IsRegular():
			return syncPath(p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syncPath(dirs[i]); err != nil {
			return err
		}
	}
	return nil
}

func syncParent(target string, sync bool) error {
	if !sync {
		return nil
	}
	return syncPath(filepath.Dir(target))
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
