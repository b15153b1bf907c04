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
	p := &Proxy{Backend: echoServer(t), IdleTimeout: 200 * time.Millisecond}
	if err := p.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Activity keeps it open past the timeout.
	buf := make([]byte, 4)
	for range 4 {
		time.Sleep(100 * time.Millisecond)
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("active connection closed: %v", err)
		}
	}
	// Then idle: the proxy closes with a FIN, which reads as EOF (not a reset).
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != io.EOF || n != 0 {
		t.Fatalf("idle connection: read %d, %v; want EOF", n, err)
	}
	if idle := time.Since(start); idle < 150*time.Millisecond {
		t.Errorf("closed after %v idle, want about 200ms", idle)
	}
}

func TestStartNeedsTimeout(t *testing.T) {
	p := &Proxy{Backend: "127.0.0.1:1"}
	if err := p.Start("127.0.0.1:0"); err == nil {
		t.Fatal("Start with no IdleTimeout succeeded")
	}
}
