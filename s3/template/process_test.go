package template

import (
	"flag"
	"testing"

	"github.com/hishel-go/hishel/internal/testserver"
	"github.com/hishel-go/hishel/storagetest"
)

var crashRuns = flag.Int("crash.runs", 6, "kill-and-check rounds of TestS3Crash")

// A process killed (SIGKILL) at random points while it writes leaves no
// visible incomplete pair, loses no completed one, and leaves counts that
// agree with a scan: the heads are the truth, and the counts are taken
// from them.
func TestS3Crash(t *testing.T) {
	storagetest.RunCrash(t, storeURL(testserver.S3(t), "crash"), *crashRuns)
}

// Two processes store and read one store at once: nothing lost, nothing
// partial visible, and the counts agree.
func TestS3TwoProcesses(t *testing.T) {
	storagetest.RunShared(t, storeURL(testserver.S3(t), "shared"))
}
