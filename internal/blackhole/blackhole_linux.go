package blackhole

import (
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"
)

// listenFull listens with a backlog of 0 (room for one connection) and
// fills the queue with connects nobody accepts.
func listenFull() (addr string, release func(), err error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", nil, err
	}
	var conns []net.Conn
	release = func() {
		for _, c := range conns {
			c.Close()
		}
		syscall.Close(fd)
	}
	fail := func(err error) (string, func(), error) {
		release()
		return "", nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fail(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		return fail(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return fail(err)
	}
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	d := net.Dialer{Timeout: 200 * time.Millisecond}
	for range 4 {
		c, err := d.Dial("tcp4", addr)
		if err != nil {
			return addr, release, nil // the queue is full
		}
		conns = append(conns, c)
	}
	return fail(fmt.Errorf("%s: 4 connects went through a listen backlog of 0", addr))
}
