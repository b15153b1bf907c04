//go:build !linux

package refused

import "net"

// reserve frees a port that was just free: the best that portable code can
// do, and racy (see the package doc).
func reserve() (addr string, release func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr = ln.Addr().String()
	ln.Close()
	return addr, func() {}, nil
}
