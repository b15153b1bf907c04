package keepalive

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const userTimeoutSupported = true

var errNoUserTimeout error // unused on Linux

// setUserTimeout sets TCP_USER_TIMEOUT, in milliseconds, on c.
func setUserTimeout(c syscall.RawConn, u time.Duration) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(u/time.Millisecond))
	})
	if err == nil {
		err = serr
	}
	if errors.Is(err, unix.ENOPROTOOPT) {
		return fmt.Errorf("keepalive: TCP_USER_TIMEOUT: %w (an MPTCP socket?)", err)
	}
	if err != nil {
		return fmt.Errorf("keepalive: TCP_USER_TIMEOUT: %w", err)
	}
	return nil
}

// Read returns the settings in effect on c (zero fields stay zero only if
// the kernel reports zero) by reading SO_KEEPALIVE, TCP_KEEPIDLE,
// TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT. TCP_USER_TIMEOUT reads as
// 0 on an MPTCP socket, which does not support it.
func Read(c syscall.Conn) (Settings, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Settings{}, fmt.Errorf("keepalive: %w", err)
	}
	var s Settings
	var serr error
	err = rc.Control(func(fd uintptr) {
		get := func(level, opt int) int {
			v, err := unix.GetsockoptInt(int(fd), level, opt)
			if err != nil && serr == nil && !errors.Is(err, unix.EOPNOTSUPP) {
				serr = err
			}
			return v
		}
		on := get(unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		s.Idle = time.Duration(get(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)) * time.Second
		s.Interval = time.Duration(get(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)) * time.Second
		s.Count = get(unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
		s.UserTimeout = time.Duration(get(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)) * time.Millisecond
		if on == 0 {
			s.Idle = -1
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return Settings{}, fmt.Errorf("keepalive: %w", err)
	}
	return s, nil
}

// ReadKernel reads the sysctls of the calling thread's network namespace
// from /proc/sys/net/ipv4. RTOMin keeps its default (a route's rto_min is
// not read), and RTOMax too unless tcp_rto_max_ms exists (Linux 6.15+).
// If one of the keepalive, tcp_retries2 or tcp_syn_retries sysctls cannot
// be read, it returns DefaultKernel and the error. A value Kernel cannot
// hold, such as a negative tcp_keepalive_time, is a [*SysctlError].
func ReadKernel() (Kernel, error) {
	k := DefaultKernel()
	read := func(name string) (int, error) {
		b, err := os.ReadFile("/proc/sys/net/ipv4/" + name)
		if err != nil {
			return 0, err
		}
		text := strings.TrimSpace(string(b))
		v, err := strconv.Atoi(text)
		if err != nil {
			return 0, &SysctlError{Name: "net.ipv4." + name, Value: text, Why: "not an integer"}
		}
		if v < 0 {
			why := "negative, which the kernel refuses"
			switch name {
			case "tcp_keepalive_time", "tcp_keepalive_intvl":
				// proc_dointvec_jiffies has no minimum, and
				// tcp_keepalive_timer compares the value as an u32.
				why = "negative: the kernel accepts it, but its keepalive timer takes it as about 2^32 jiffies " +
					"(49.7 days at HZ=1000, 198.8 days at HZ=250), so a socket left to this sysctl sends no " +
					"probe for that long; set it to 0 or more"
			}
			return 0, &SysctlError{Name: "net.ipv4." + name, Value: text, Why: why}
		}
		return v, nil
	}
	for _, f := range []struct {
		name string
		set  func(int)
	}{
		// 0 is a real setting for these four, not "the default": Kernel
		// writes it as negative.
		{"tcp_keepalive_time", func(v int) { k.KeepaliveTime = time.Duration(zeroAsNegative(v)) * time.Second }},
		{"tcp_keepalive_intvl", func(v int) { k.KeepaliveIntvl = time.Duration(zeroAsNegative(v)) * time.Second }},
		{"tcp_keepalive_probes", func(v int) { k.KeepaliveProbes = zeroAsNegative(v) }},
		{"tcp_retries2", func(v int) { k.Retries2 = zeroAsNegative(v) }},
		{"tcp_syn_retries", func(v int) { k.SynRetries = v }},
	} {
		v, err := read(f.name)
		if err != nil {
			return DefaultKernel(), wrapReadError(err)
		}
		f.set(v)
	}
	var se *SysctlError
	if v, err := read("tcp_syn_linear_timeouts"); err == nil {
		k.SynLinearTimeouts = zeroAsNegative(v) // 0 is a real setting: none
	} else if errors.As(err, &se) {
		return DefaultKernel(), err
	} else {
		k.SynLinearTimeouts, k.SynLinearTimeoutsAbsent = -1, true // before Linux 6.5
	}
	if v, err := read("tcp_rto_max_ms"); err == nil && v > 0 {
		k.RTOMax = time.Duration(v) * time.Millisecond
	} else if errors.As(err, &se) {
		return DefaultKernel(), err
	}
	return k, nil
}

// wrapReadError prefixes a file error with the package name; a
// *SysctlError already has it.
func wrapReadError(err error) error {
	var se *SysctlError
	if errors.As(err, &se) {
		return err
	}
	return fmt.Errorf("keepalive: %w", err)
}

func zeroAsNegative(v int) int {
	if v == 0 {
		return -1
	}
	return v
}

// pendingError returns and clears the socket's pending error (SO_ERROR):
// how a connection that is not read learns that the kernel aborted it.
func pendingError(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var v int
	if rc.Control(func(fd uintptr) { v, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR) }) != nil || v == 0 {
		return nil
	}
	return syscall.Errno(v)
}
