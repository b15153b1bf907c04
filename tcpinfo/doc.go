// Package tcpinfo reads the kernel's view of one TCP connection (TCP_INFO on
// Linux): its state, retransmissions and probes, unacknowledged data, RTO and
// RTT, how long ago data was last sent and received, the peer's window, and
// which kernel timer governs the socket.
//
// Only one timer runs on an established socket: retransmission when data is
// unacknowledged, persist when data waits behind the peer's zero window, and
// keepalive otherwise (if enabled). That decides which settings can detect a
// dead peer; see package keepalive.
//
// On systems other than Linux, [Get] returns an error.
package tcpinfo
