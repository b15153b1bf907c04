//go:build linux

package lab

import (
	"net"

	"golang.org/x/sys/unix"
)

var tcpStates = [...]string{"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
	"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"}

// getTCPInfo reads TCP_INFO; nil if the socket is gone.
func getTCPInfo(c *net.TCPConn) *TCPInfo {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	var ti *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) { ti, gerr = unix.GetsockoptTCPInfo(int(fd), unix.SOL_TCP, unix.TCP_INFO) }); err != nil || gerr != nil {
		return nil
	}
	st := "?"
	if int(ti.State) < len(tcpStates) {
		st = tcpStates[ti.State]
	}
	return &TCPInfo{State: st, Retransmits: ti.Retransmits, Probes: ti.Probes, Backoff: ti.Backoff,
		Unacked: ti.Unacked, TotalRetrans: ti.Total_retrans, RTOms: ti.Rto / 1000, LastRecvMs: ti.Last_data_recv}
}
