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
