// Package keepalive explains and applies the settings that decide how fast a
// TCP connection notices that its peer has gone: TCP keepalive (idle,
// interval, count), TCP_USER_TIMEOUT and the kernel's retransmission limits.
//
// Only one kernel timer runs on an established Linux socket at a time:
// keepalive (nothing unacknowledged), retransmission (unacknowledged data) or
// persist (the peer advertises a zero window). Keepalive settings matter only
// for the first. [Detect] turns settings and the namespace's sysctls
// ([Kernel]) into the worst-case detection time for each [Situation], with
// the formula it used; [Recommend] proposes settings for a path with idle
// timeouts; [Apply] and [ApplyListen] put settings on a [net.Dialer] or a
// [net.ListenConfig], including TCP_USER_TIMEOUT, which the standard library
// has no field for.
//
// [Server] and [Client] are the two ends of a keepalive experiment (the
// nodejs-socket-keepalive pair): they log one JSON event per line, with a
// TCP_INFO snapshot and the errno at every error, and report when and how
// each side detected a failure.
package keepalive
