package keepalive

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"
)

// Client is the dialing end of an experiment (the seed's client). The zero
// value dials port 7654 with Go's keepalive defaults, says hello, and then
// only reads.
type Client struct {
	Endpoint
	// Port is the server's port; zero means DefaultPort (7654).
	Port int
	// DialTimeout bounds the connection attempt; zero means 10 s.
	DialTimeout time.Duration
}

// Dial connects to host with the client's Settings applied.
func (c *Client) Dial(ctx context.Context, host string) (net.Conn, error) {
	port := c.Port
	if port == 0 {
		port = DefaultPort
	}
	timeout := c.DialTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	d := net.Dialer{Timeout: timeout}
	if c.Settings != nil {
		if err := Apply(&d, *c.Settings); err != nil {
			return nil, err
		}
	}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("keepalive: %w", err)
	}
	return conn, nil
}

// DialAndRun dials host and runs the connection; see Run.
func (c *Client) DialAndRun(ctx context.Context, host string) (Result, error) {
	conn, err := c.Dial(ctx, host)
	if err != nil {
		return Result{Side: "client"}, err
	}
	return c.Run(ctx, conn)
}

// Run says hello on conn and runs the client's side until the connection
// fails or ctx is done, and closes conn. The error is non-nil only if the
// run could not start or ctx ended it before any failure; a failure of the
// connection is the Result.
func (c *Client) Run(ctx context.Context, conn net.Conn) (Result, error) {
	if _, err := conn.Write([]byte("hello\n")); err != nil {
		conn.Close()
		return Result{Side: "client", Detected: time.Now(), Op: "write", Errno: Errno(err), Err: err}, nil
	}
	return c.run(ctx, "client", conn, Quiet)
}
