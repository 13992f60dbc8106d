package bundle

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A stage is named .NAME.c2vm-tmp-PID-RANDOM (PID: the converting process); while an existing bundle
// is replaced it is moved aside to the same name plus ".old". A convert that was killed (SIGKILL,
// power loss) leaves these behind; NewStage removes the ones of the same target that are stale:
//
//   - the PID in the name is not a running process (kill(PID, 0) fails with ESRCH), or
//   - the stage was last modified more than StaleAge ago (a reused PID, a stage from another PID
//     namespace or host sharing the directory, or a name without a PID).
//
// A live convert to the same target keeps its stage. Removal is best effort: a stage that cannot be
// removed (another user's) is left alone.

// StaleAge is the age after which a stage is stale whatever its PID.
const StaleAge = 24 * time.Hour

// stagePrefix is the name prefix of the stages of target.
func stagePrefix(target string) string { return "." + filepath.Base(target) + ".c2vm-tmp-" }

// removeStaleStages removes the stale stages beside target.
func removeStaleStages(target string, now time.Time) {
	parent, prefix := filepath.Dir(target), stagePrefix(target)
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
