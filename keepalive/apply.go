package keepalive

import (
	"context"
	"net"
	"syscall"
	"time"
)

// keepAliveConfig maps s to the standard library's configuration: zero
// fields ("OS default") become -1, which leaves the socket's value alone.
func keepAliveConfig(s Settings) (idle time.Duration, cfg net.KeepAliveConfig) {
	if s.Idle < 0 {
		return -1, net.KeepAliveConfig{}
	}
	orOS := func(d time.Duration) time.Duration {
		if d <= 0 {
			return -1
		}
		return d
	}
	cfg = net.KeepAliveConfig{Enable: true, Idle: orOS(s.Idle), Interval: orOS(s.Interval), Count: -1}
	if s.Count > 0 {
		cfg.Count = s.Count
	}
	return cfg.Idle, cfg
}

// Apply configures d so that the connections it dials use s: keepalive
// through d.KeepAlive and d.KeepAliveConfig, and TCP_USER_TIMEOUT through
// d.ControlContext or d.Control, calling any function already there first.
//
// Linux refuses TCP_USER_TIMEOUT on MPTCP sockets (ENOPROTOOPT), so when
// s.UserTimeout is set Apply turns Multipath TCP off for d. On systems other
// than Linux, Apply sets keepalive and returns an error if s.UserTimeout is set.
func Apply(d *net.Dialer, s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	d.KeepAlive, d.KeepAliveConfig = keepAliveConfig(s)
	if s.UserTimeout <= 0 {
		return nil
	}
	if !userTimeoutSupported {
		return errNoUserTimeout
	}
	d.SetMultipathTCP(false)
	if prev := d.ControlContext; prev != nil {
		// The standard library ignores Control when ControlContext is set.
		d.ControlContext = func(ctx context.Context, network, address string, c syscall.RawConn) error {
			if err := prev(ctx, network, address, c); err != nil {
				return err
			}
			return setUserTimeout(c, s.UserTimeout)
		}
		return nil
	}
	d.Control = chainControl(d.Control, s.UserTimeout)
	return nil
}

// ApplyListen configures lc so that the connections it accepts use s.
// TCP_USER_TIMEOUT is set on the listening socket, which accepted sockets
// inherit. Since Go 1.24 a ListenConfig creates an MPTCP socket on Linux by
// default, which refuses TCP_USER_TIMEOUT, so when s.UserTimeout is set
// ApplyListen turns Multipath TCP off for lc.
func ApplyListen(lc *net.ListenConfig, s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	lc.KeepAlive, lc.KeepAliveConfig = keepAliveConfig(s)
	if s.UserTimeout <= 0 {
		return nil
	}
	if !userTimeoutSupported {
		return errNoUserTimeout
	}
	lc.SetMultipathTCP(false)
	lc.Control = chainControl(lc.Control, s.UserTimeout)
	return nil
}

func chainControl(prev func(network, address string, c syscall.RawConn) error, u time.Duration) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if prev != nil {
			if err := prev(network, address, c); err != nil {
				return err
			}
		}
		return setUserTimeout(c, u)
	}
}
