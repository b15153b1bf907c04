// Package blackhole gives tests a TCP address on the loopback where a dial
// hangs, as one to a host behind a firewall that drops packets does: no
// answer, until the dial's own deadline.
//
// On Linux it is a listening socket whose accept queue is full and never
// drained: the kernel drops the SYNs of further connects. Elsewhere the
// package skips the test.
package blackhole
