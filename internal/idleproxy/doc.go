// Package idleproxy is a TCP relay that closes connections idle for longer
// than a timeout, with a FIN to both sides, the way a cloud load balancer
// does (AWS ALB after 60 s, ELB after its configured timeout). The demo
// puts it between a client and a server on loopback.
package idleproxy
