package blackhole

import "testing"

// Addr returns "127.0.0.1:port" where a TCP dial hangs until its deadline,
// until the test ends. It skips the test where that cannot be made.
func Addr(t testing.TB) string {
	t.Helper()
	addr, release, err := listenFull()
	if err != nil {
		t.Fatalf("blackhole: %v", err)
	}
	if release == nil {
		t.Skip("blackhole: a dial that hangs needs Linux")
	}
	t.Cleanup(release)
	return addr
}
