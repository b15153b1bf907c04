package refused_test

import (
	"errors"
	"net"
	"runtime"
	"syscall"
	"testing"

	"github.com/connscope/connscope/internal/refused"
)

func TestAddrRefusesEveryDial(t *testing.T) {
	addr := refused.Addr(t)
	for range 20 {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			t.Fatalf("dial %s succeeded", addr)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s: %v, want ECONNREFUSED", addr, err)
		}
	}
}

// The port stays taken: nothing else can listen on it while the test runs.
func TestAddrStaysReserved(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux keeps the port bound")
	}
	addr := refused.Addr(t)
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatalf("listen on %s succeeded: the port is not reserved", addr)
	}
}
