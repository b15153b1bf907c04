package lab

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashHelperEnv) == "1" {
		crashHelper() // never returns: the parent kills it
	}
	goleak.VerifyTestMain(m)
}

// crashHelperEnv makes the test binary build a lab and wait to be killed
// (TestCleanupAfterKill).
const crashHelperEnv = "CSLAB_CRASH_HELPER"
