// Package lab reproduces dead TCP connections on one machine and measures how
// long each side takes to notice.
//
// It builds three network namespaces — client, router, server — joined by veth
// pairs, entirely through netlink (vishvananda/netlink, google/nftables; no ip or
// nft commands). Faults are nftables rules on the router's FORWARD hook (silent
// drop, one-way drop, reject with TCP reset or ICMP unreachable, a stateful
// firewall whose conntrack state expires) or a userspace relay in the router
// that closes idle connections with FIN. The drop must be in a router: a
// userspace proxy that stops forwarding cannot imitate it, because its kernel
// keeps acknowledging, so keepalive never fires.
//
// Namespaces are named Prefix+"<pid>-<n>-<role>" and bind-mounted in /run/netns.
// Close removes them; Cleanup removes those of dead processes (New calls it
// first). Sysctls such as tcp_retries2 are set only inside the lab.
//
// Run executes scenarios and compares each side's measured detection time with
// the kernel model of package keepalive (keepalive.Detect).
package lab

// Prefix starts the name of every namespace the lab creates.
const Prefix = "cslab-"
