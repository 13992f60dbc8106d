package bundle

import (
	"time"

	"github.com/c2vm/c2vm/internal/fileutil"
)

// A bundle's stage is a fileutil stage: .NAME.c2vm-tmp-PID-RANDOM beside the target, removed by
// the next NewStage for the same target once its process is gone or it is older than StaleAge
// (see fileutil.MkdirStage).

// StaleAge is the age after which a stage is stale whatever its PID.
const StaleAge = fileutil.StaleAge

// RemoveStaleStages is fileutil.RemoveStaleStages, kept for internal/artifact until it calls
// fileutil itself.
func RemoveStaleStages(target string, now time.Time) { fileutil.RemoveStaleStages(target, now) }

// MkdirStage is fileutil.MkdirStage, kept for internal/artifact until it calls fileutil itself.
func MkdirStage(target string) (string, error) { return fileutil.MkdirStage(target) }
