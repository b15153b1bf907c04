package refused

import "testing"

// Addr returns "127.0.0.1:port" where a TCP dial gets ECONNREFUSED until
// the test ends.
func Addr(t testing.TB) string {
	t.Helper()
	addr, release, err := reserve()
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	t.Cleanup(release)
	return addr
}
