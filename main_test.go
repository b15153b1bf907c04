package connscope

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test leaves a goroutine behind: a sink's
// writer goroutine, a server, a relay. It covers package connscope_test
// too (one test binary).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
