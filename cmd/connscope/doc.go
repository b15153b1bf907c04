// Command connscope is the command-line side of connscope: what needs no
// code change in the program under study.
//
//	connscope demo                 the load-balancer idle-close race, on loopback
//	connscope keepalive server     a TCP endpoint for keepalive experiments
//	connscope keepalive client     its peer
//	connscope keepalive lab        dead-connection scenarios in network namespaces
//	connscope keepalive explain    worst-case detection times for given settings
//
// Usage errors exit with status 2, failures with status 1.
package main
