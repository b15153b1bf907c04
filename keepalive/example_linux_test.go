package keepalive_test

import (
	"fmt"
	"net"
	"time"

	"github.com/connscope/connscope/keepalive"
)

// ApplyConn changes an established connection; Read shows what the kernel
// has for it.
func ExampleApplyConn() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()

	s := keepalive.Settings{Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 4, UserTimeout: 3 * time.Second}
	if err := keepalive.ApplyConn(c, s); err != nil {
		panic(err)
	}
	fmt.Println(keepalive.Read(c.(*net.TCPConn)))
	// Output: 5s/2s/4 user-timeout=3s <nil>
}
