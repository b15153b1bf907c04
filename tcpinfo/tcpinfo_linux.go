package tcpinfo

import (
	"errors"
	"fmt"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tcpIsMPTCP is TCP_IS_MPTCP (Linux 5.16+): 1 on an MPTCP socket.
const tcpIsMPTCP = 43

// Get returns the TCP_INFO of c, usually a *net.TCPConn (or a wrapper that
// has SyscallConn). For a Multipath TCP socket it reports the first
// subflow, with MPTCP set; kernels that do not support TCP_INFO on MPTCP
// sockets give an error, and Info.MPTCP is still set.
func Get(c syscall.Conn) (Info, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Info{}, fmt.Errorf("tcpinfo: %w", err)
	}
	var (
		ti    unix.TCPInfo
		n     = uint32(unsafe.Sizeof(ti))
		info  Info
		gerr  error
		proto int
	)
	err = rc.Control(func(fd uintptr) {
		// GetsockoptTCPInfo does not return the length, which tells which
		// fields this kernel filled in.
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
			uintptr(unsafe.Pointer(&ti)), uintptr(unsafe.Pointer(&n)), 0)
		if e != 0 {
			gerr = e
		}
		if v, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, tcpIsMPTCP); err == nil && v == 1 {
			info.MPTCP = true
		}
		proto, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
		if proto == unix.IPPROTO_MPTCP {
			info.MPTCP = true
		}
		if v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE); err == nil {
			info.Keepalive = v != 0
		}
	})
	if err == nil {
		err = gerr
	}
	if err != nil {
		if info.MPTCP && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOPROTOOPT)) {
			return info, fmt.Errorf("tcpinfo: TCP_INFO on an MPTCP socket is not supported by this kernel: %w", err)
		}
		return info, fmt.Errorf("tcpinfo: TCP_INFO: %w", err)
	}
	us := func(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }
	msd := func(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }
	info.State = stateName(ti.State)
	info.Retransmits = int(ti.Retransmits)
	info.Probes = int(ti.Probes)
	info.Backoff = int(ti.Backoff)
	info.Unacked = int(ti.Unacked)
	info.TotalRetrans = int(ti.Total_retrans)
	info.RTO = us(ti.Rto)
	info.RTT = us(ti.Rtt)
	info.RTTVar = us(ti.Rttvar)
	info.LastDataRecv = msd(ti.Last_data_recv)
	info.LastAckRecv = msd(ti.Last_ack_recv)
	info.LastDataSent = msd(ti.Last_data_sent)
	if uintptr(n) >= unsafe.Offsetof(ti.Notsent_bytes)+4 {
		info.NotSent = int(ti.Notsent_bytes)
	}
	if uintptr(n) >= unsafe.Offsetof(ti.Snd_wnd)+4 {
		info.SndWnd, info.SndWndKnown = ti.Snd_wnd, true
	}
	info.Timer = info.timer()
	return info, nil
}
