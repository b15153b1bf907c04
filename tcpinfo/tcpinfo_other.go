//go:build !linux

package tcpinfo

import (
	"errors"
	"syscall"
)

// Get returns the TCP_INFO of c. It is only supported on Linux.
func Get(c syscall.Conn) (Info, error) {
	return Info{}, errors.New("tcpinfo: TCP_INFO is only supported on Linux")
}
