// Package refused gives tests a TCP address on the loopback where a dial
// is refused, and stays refused for the whole test.
//
// The usual way, listening on port 0 and closing the listener, frees the
// port: another test, or a connection's ephemeral port, can take it
// before the dial, which then succeeds or reaches the wrong peer. On
// Linux this package keeps the port bound, without listening, for as long
// as the test runs: the kernel answers a SYN to it with a reset, and no
// one else can take it.
package refused
