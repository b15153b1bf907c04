package connscope

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// testTimeout bounds every wait in this package's tests.
const testTimeout = 10 * time.Second

// captureSink keeps a copy of every event, for assertions.
type captureSink struct {
	mu     sync.Mutex
	events []Event
	ch     chan struct{} // signalled on every event
}

func newCaptureSink() *captureSink { return &captureSink{ch: make(chan struct{}, 1)} }

func (c *captureSink) Emit(e *Event) {
	c.mu.Lock()
	ev := *e
	ev.Headers = append([]Header(nil), e.Headers...)
	c.events = append(c.events, ev)
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

// all returns a copy of the events so far.
func (c *captureSink) all() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events...)
}

// of returns the events with message msg about the connection r (any when r is nil).
func (c *captureSink) of(msg string, r *Record) []Event {
	var out []Event
	for _, e := range c.all() {
		if e.Message == msg && (r == nil || e.Conn == r) {
			out = append(out, e)
		}
	}
	return out
}

// wait waits until n events with message msg about r arrived, or fails.
func (c *captureSink) wait(t testing.TB, msg string, r *Record, n int) []Event {
	t.Helper()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for {
		if evs := c.of(msg, r); len(evs) >= n {
			return evs
		}
		select {
		case <-c.ch:
		case <-time.After(10 * time.Millisecond):
		case <-deadline.C:
			t.Fatalf("timed out waiting for %d %q events; have %v", n, msg, c.messages())
		}
	}
}

func (c *captureSink) messages() []string {
	var out []string
	for _, e := range c.all() {
		out = append(out, e.Message)
	}
	return out
}

// tcpPair returns the two ends of a loopback TCP connection, unwrapped.
func tcpPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, s := connectPair(t, ln, "tcp", ln.Addr().String())
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// unixPair returns the two ends of a unix stream connection, unwrapped.
func unixPair(t testing.TB) (client, server *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, s := connectPair(t, ln, "unix", path)
	return c.(*net.UnixConn), s.(*net.UnixConn)
}

func connectPair(t testing.TB, ln net.Listener, network, addr string) (net.Conn, net.Conn) {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		c.Close()
		t.Fatal(r.err)
	}
	t.Cleanup(func() { c.Close(); r.c.Close() })
	return c, r.c
}
