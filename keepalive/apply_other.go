//go:build !linux

package keepalive

import (
	"errors"
	"net"
	"syscall"
	"time"
)

const userTimeoutSupported = false

var errNoUserTimeout = errors.New("keepalive: TCP_USER_TIMEOUT is only supported on Linux")

func setUserTimeout(c syscall.RawConn, u time.Duration) error { return errNoUserTimeout }

// Read returns the settings in effect on c. It is only supported on Linux.
func Read(c syscall.Conn) (Settings, error) {
	return Settings{}, errors.New("keepalive: reading socket settings is only supported on Linux")
}

// ReadKernel returns DefaultKernel and an error: the sysctls are Linux's.
func ReadKernel() (Kernel, error) {
	return DefaultKernel(), errors.New("keepalive: kernel settings are only readable on Linux")
}

func pendingError(c net.Conn) error { return nil }
