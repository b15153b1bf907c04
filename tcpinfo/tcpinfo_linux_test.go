package tcpinfo

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// loopback returns both ends of a loopback connection dialed with d.
func loopback(t *testing.T, d *net.Dialer, lc *net.ListenConfig) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func TestGetIdle(t *testing.T) {
	c, s := loopback(t, &net.Dialer{}, &net.ListenConfig{KeepAlive: -1})
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(s, buf); err != nil {
		t.Fatal(err)
	}
	ci, err := Get(c)
	if err != nil {
		t.Fatal(err)
	}
	if ci.State != "ESTABLISHED" || !ci.Keepalive || ci.MPTCP || ci.RTO <= 0 {
		t.Errorf("client: %+v; want ESTABLISHED, keepalive on (Go's default), TCP, RTO > 0", ci)
	}
	// Nothing in flight once the peer acked: keepalive runs.
	for i := 0; i < 100 && ci.Unacked > 0; i++ {
		time.Sleep(10 * time.Millisecond)
		ci, _ = Get(c)
	}
	if ci.Timer != "keepalive" {
		t.Errorf("client timer = %q, want keepalive (%+v)", ci.Timer, ci)
	}
	si, err := Get(s)
	if err != nil {
		t.Fatal(err)
	}
	if si.Keepalive || si.Timer != "none" {
		t.Errorf("server (keepalive off): timer %q keepalive %v, want none, false", si.Timer, si.Keepalive)
	}

	// The peer's FIN moves the client to CLOSE_WAIT.
	s.Close()
	for i := 0; i < 100 && ci.State != "CLOSE_WAIT"; i++ {
		time.Sleep(10 * time.Millisecond)
		ci, _ = Get(c)
	}
	if ci.State != "CLOSE_WAIT" {
		t.Errorf("after the peer closed: state %q, want CLOSE_WAIT", ci.State)
	}
}

// A peer that stops reading closes its window: the persist timer runs.
func TestGetZeroWindow(t *testing.T) {
	c, _ := loopback(t, &net.Dialer{}, &net.ListenConfig{})
	c.SetWriteBuffer(64 << 10)
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(5 * time.Second)
	var info Info
	for i := 0; i < 1000 && time.Now().Before(deadline); i++ {
		c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := c.Write(buf)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal(err)
		}
		if info, err = Get(c); err != nil {
			t.Fatal(err)
		}
		if info.Timer == "persist" {
			break
		}
	}
	if info.Timer != "persist" || info.NotSent == 0 || (info.SndWndKnown && info.SndWnd != 0) {
		t.Errorf("writer to a full peer: %+v; want timer persist, queued bytes, zero window", info)
	}
}

// Go 1.24+ may create MPTCP sockets; Get says so.
func TestGetMPTCP(t *testing.T) {
	var d net.Dialer
	d.SetMultipathTCP(true)
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	c, _ := loopback(t, &d, &lc)
	if ok, _ := c.MultipathTCP(); !ok {
		t.Skip("MPTCP not available here (net.mptcp.enabled=0?)")
	}
	info, err := Get(c)
	if !info.MPTCP {
		t.Errorf("MPTCP socket: Info.MPTCP = false (%+v, %v)", info, err)
	}
	if err == nil && info.State != "ESTABLISHED" {
		t.Errorf("MPTCP first subflow state %q, want ESTABLISHED", info.State)
	}
	t.Logf("MPTCP: %+v, %v", info, err)
}
