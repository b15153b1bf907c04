package blackhole_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/connscope/connscope/internal/blackhole"
)

func TestAddrDialHangsUntilDeadline(t *testing.T) {
	addr := blackhole.Addr(t)
	for range 3 {
		d := net.Dialer{Timeout: 100 * time.Millisecond}
		c, err := d.Dial("tcp4", addr)
		if err == nil {
			c.Close()
			t.Fatalf("dial %s succeeded", addr)
		}
		if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
			t.Fatalf("dial %s: %v, want its deadline to pass", addr, err)
		}
	}
}
