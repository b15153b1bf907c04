package tcpinfo_test

import (
	"fmt"
	"net"

	"github.com/connscope/connscope/tcpinfo"
)

func ExampleGet() {
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
	info, err := tcpinfo.Get(c.(*net.TCPConn))
	if err != nil {
		panic(err)
	}
	fmt.Println(info.State, info.Keepalive)
	// Output: ESTABLISHED true
}
