// Package selfsigned makes a TLS certificate for loopback servers in
// demos and tests, so they need no files and no network.
package selfsigned
