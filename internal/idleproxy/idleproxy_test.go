package idleproxy

import (
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer echoes until the peer closes.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

func TestClosesIdleWithFIN(t *testing.T) {
	const timeout = 300 * time.Millisecond
	p := &Proxy{Backend: echoServer(t), IdleTimeout: timeout}
	if err := p.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Activity keeps it open past the timeout. Pings come often, so that
	// only a stall of nearly the whole timeout (a busy machine) could let
	// the proxy find the connection idle.
	buf := make([]byte, 4)
	var last time.Time // when the last ping was sent
	for begin := time.Now(); time.Since(begin) < 2*timeout; {
		time.Sleep(10 * time.Millisecond)
		last = time.Now()
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("active connection closed: %v", err)
		}
	}
	// Then idle: the proxy closes with a FIN, which reads as EOF (not a
	// reset), a whole timeout after the last byte, which it relayed
	// after the last ping was sent.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != io.EOF || n != 0 {
		t.Fatalf("idle connection: read %d, %v; want EOF", n, err)
	}
	if idle := time.Since(last); idle < timeout {
		t.Errorf("closed %v after the last ping, want at least the %v idle timeout", idle, timeout)
	}
}

func TestStartNeedsTimeout(t *testing.T) {
	p := &Proxy{Backend: "127.0.0.1:1"}
	if err := p.Start("127.0.0.1:0"); err == nil {
		t.Fatal("Start with no IdleTimeout succeeded")
	}
}
