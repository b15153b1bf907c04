package connscope

// What an io.EOF from a read means: the peer's FIN ("Socket End",
// closedBy remote), unless this program or its kernel ended the reading
// side first: its own CloseRead, or a reset or timeout after which Linux
// returns 0 bytes to every read.

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestResetIsNotAFIN: the peer resets the connection (RST, no FIN).
// Linux reports ECONNRESET to the first syscall only; the next read on
// the dead socket returns 0 bytes (io.EOF). The spy must not turn that
// aftermath into "Socket End" (the peer sent FIN): the peer never did.
func TestResetIsNotAFIN(t *testing.T) {
	c, s := tcpPair(t)
	sink := newCaptureSink()
	spy := &Spy{Sink: sink}
	w := spy.WrapConn(c, Client)
	r := RecordOf(w)

	s.SetLinger(0) // Close sends RST
	s.Close()
	time.Sleep(100 * time.Millisecond) // let the RST arrive

	w.SetDeadline(time.Now().Add(testTimeout))
	_, werr := w.Write([]byte("x"))
	if !errors.Is(werr, syscall.ECONNRESET) {
		t.Fatalf("write after RST: %v, want ECONNRESET", werr)
	}
	_, rerr := w.Read(make([]byte, 8))
	t.Logf("read after the reset: %v", rerr)
	w.Close()

	for _, e := range sink.all() {
		t.Logf("event %q op=%q err=%v closedBy=%q hadError=%v", e.Message, e.Op, e.Err, e.ClosedBy, e.HadError)
	}
	if evs := sink.of(MsgEnd, r); len(evs) != 0 {
		t.Errorf("got %d %q events for a connection the peer reset (no FIN was sent): the EOF that follows ECONNRESET is not a FIN", len(evs), MsgEnd)
	}
}

// TestKernelTimeoutIsNotAFIN: the kernel gives up on a peer that
// stopped reading (zero window, TCP_USER_TIMEOUT). The writer gets
// ETIMEDOUT; a read after it returns 0 bytes (io.EOF), as the brief says
// ("a concurrent reader sees io.EOF when the writer got ETIMEDOUT"). The
// peer sent no FIN and did not close: no "Socket End", and "Socket Close"
// must not say closedBy=remote.
func TestKernelTimeoutIsNotAFIN(t *testing.T) {
	c, _ := tcpPair(t) // the server end never reads
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, 18 /* TCP_USER_TIMEOUT */, 300)
		if serr == nil {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096)
		}
	})
	if serr != nil {
		t.Skip("TCP_USER_TIMEOUT:", serr)
	}
	sink := newCaptureSink()
	spy := &Spy{Sink: sink}
	w := spy.WrapConn(c, Client)
	r := RecordOf(w)

	w.SetDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 64<<10)
	var werr error
	for werr == nil {
		_, werr = w.Write(buf)
	}
	if !errors.Is(werr, syscall.ETIMEDOUT) {
		t.Skipf("write ended with %v, not the kernel's ETIMEDOUT", werr)
	}
	_, rerr := w.Read(make([]byte, 8))
	t.Logf("write: %v; read after it: %v", werr, rerr)
	w.Close()

	for _, e := range sink.all() {
		t.Logf("event %q op=%q errKind=%v closedBy=%q hadError=%v", e.Message, e.Op, func() string { k, _ := Classify(e.Err); return k }(), e.ClosedBy, e.HadError)
	}
	if evs := sink.of(MsgEnd, r); len(evs) != 0 {
		t.Errorf("got %d %q events after the kernel's ETIMEDOUT: the peer sent no FIN", len(evs), MsgEnd)
	}
	if evs := sink.of(MsgClose, r); len(evs) == 1 && evs[0].ClosedBy != "local" {
		t.Errorf("Socket Close closedBy=%q after the kernel timed the peer out; the peer did not close it", evs[0].ClosedBy)
	}
}

// TestCloseReadIsNotPeerFIN: CloseRead (shutdown SHUT_RD) is how a
// program stops its own reader: the blocked Read returns io.EOF. The
// peer sent nothing and is still there. The spy reports that EOF as the
// peer's FIN ("Socket End") and, at Close, closedBy=remote; CloseWrite
// has a flag for the same reason (flagLocalFIN), CloseRead has none.
func TestCloseReadIsNotPeerFIN(t *testing.T) {
	for _, tt := range []struct {
		name string
		pair func(testing.TB) (net.Conn, net.Conn)
	}{
		{"tcp", func(t testing.TB) (net.Conn, net.Conn) { c, s := tcpPair(t); return c, s }},
		{"unix", func(t testing.TB) (net.Conn, net.Conn) { c, s := unixPair(t); return c, s }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, peer := tt.pair(t)
			sink := newCaptureSink()
			spy := &Spy{Sink: sink}
			w := spy.WrapConn(c, Client)
			r := RecordOf(w)
			w.SetDeadline(time.Now().Add(testTimeout))

			got := make(chan error, 1)
			go func() {
				_, err := w.Read(make([]byte, 8))
				got <- err
			}()
			time.Sleep(50 * time.Millisecond) // the reader is blocked
			if err := w.(interface{ CloseRead() error }).CloseRead(); err != nil {
				t.Fatal(err)
			}
			if err := <-got; err != io.EOF {
				t.Fatalf("read after CloseRead: %v, want io.EOF", err)
			}
			// The peer is still there: the connection still carries data out.
			if _, err := w.Write([]byte("still here")); err != nil {
				t.Fatalf("write after CloseRead: %v", err)
			}
			peer.SetDeadline(time.Now().Add(testTimeout))
			if _, err := peer.Read(make([]byte, 16)); err != nil {
				t.Fatalf("peer read: %v", err)
			}
			w.Close()

			if evs := sink.of(MsgEnd, r); len(evs) != 0 {
				t.Errorf("got %d %q events: the EOF came from this program's own CloseRead, not a FIN from the peer", len(evs), MsgEnd)
			}
			if evs := sink.of(MsgClose, r); len(evs) != 1 || evs[0].ClosedBy != "local" {
				t.Errorf("Socket Close events %d, closedBy=%q; want one, local (the peer never closed)", len(evs), closedBy(evs))
			}
		})
	}
}

func closedBy(evs []Event) string {
	if len(evs) == 0 {
		return ""
	}
	return evs[0].ClosedBy
}

// TestCopyNSeesPeerFIN: io.CopyN(dst, src, n) between two spied TCP
// conns goes through dst's ReadFrom with an *io.LimitedReader over src
// (spliced). When src's peer sends FIN before n bytes, CopyN returns
// io.EOF to the program: src reached EOF. The spy must report "Socket End"
// on src and "Socket Close" closedBy=remote, as it does for io.Copy.
func TestCopyNSeesPeerFIN(t *testing.T) {
	srcC, srcPeer := tcpPair(t)
	dstC, dstPeer := tcpPair(t)
	sink := newCaptureSink()
	spy := &Spy{Sink: sink}
	src := spy.WrapConn(srcC, Client)
	dst := spy.WrapConn(dstC, Client)
	src.SetDeadline(time.Now().Add(testTimeout))
	dst.SetDeadline(time.Now().Add(testTimeout))
	go io.Copy(io.Discard, dstPeer)

	srcPeer.Write([]byte("0123456789"))
	srcPeer.CloseWrite() // FIN after 10 bytes

	n, err := io.CopyN(dst, src, 100)
	if n != 10 || err != io.EOF {
		t.Fatalf("CopyN = %d, %v; want 10, EOF", n, err)
	}
	src.Close()
	sr := RecordOf(src)
	if sr.BytesRead() != 10 {
		t.Errorf("src BytesRead = %d, want 10", sr.BytesRead())
	}
	if evs := sink.of(MsgEnd, sr); len(evs) != 1 {
		t.Errorf("src got %d %q events; the program saw io.EOF from it (messages: %v)", len(evs), MsgEnd, sink.messages())
	}
	if evs := sink.of(MsgClose, sr); len(evs) != 1 || evs[0].ClosedBy != "remote" {
		t.Errorf("src Socket Close: %+v; want closedBy=remote (the peer's FIN came first)", evs)
	}
}
