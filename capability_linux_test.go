package connscope

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// callAs calls f with c as a T, or says that c has no such method.
func callAs[T any](c net.Conn, f func(T) error) error {
	v, ok := c.(T)
	if !ok {
		var t *T
		return fmt.Errorf("%T has no %T's methods", c, t)
	}
	return f(v)
}

// sockopt reads one socket option from fd.
type sockopt func(fd int) (int, error)

func intOpt(level, opt int) sockopt {
	return func(fd int) (int, error) { return syscall.GetsockoptInt(fd, level, opt) }
}

// lingerOpt reads SO_LINGER: its seconds, or -1 when it is off.
func lingerOpt(fd int) (int, error) {
	var l syscall.Linger
	n := uint32(unsafe.Sizeof(l))
	_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET, syscall.SO_LINGER,
		uintptr(unsafe.Pointer(&l)), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return 0, e
	}
	if l.Onoff == 0 {
		return -1, nil
	}
	return int(l.Linger), nil
}

// readOpt reads o from c's socket.
func readOpt(t *testing.T, c syscall.Conn, o sockopt) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var oerr error
	if err := rc.Control(func(fd uintptr) { v, oerr = o(int(fd)) }); err != nil {
		t.Fatal(err)
	}
	if oerr != nil {
		t.Fatal(oerr)
	}
	return v
}

// TestSocketOptionsReachSocket sets each option through a wrapper over a
// real socket and reads it back with getsockopt on the inner conn's
// descriptor.
func TestSocketOptionsReachSocket(t *testing.T) {
	type opt struct {
		name string
		get  sockopt
		want int
	}
	tcp := []string{"tcp"}
	all := []string{"tcp", "unix", "udp"}
	for _, tt := range []struct {
		name string
		nets []string // the conns that have the method
		set  func(w net.Conn) error
		want []opt
	}{
		{"SetNoDelay(false)", tcp, func(w net.Conn) error {
			return callAs(w, func(c interface{ SetNoDelay(bool) error }) error { return c.SetNoDelay(false) })
		}, []opt{{"TCP_NODELAY", intOpt(syscall.IPPROTO_TCP, syscall.TCP_NODELAY), 0}}},
		{"SetKeepAlive(false)", tcp, func(w net.Conn) error {
			return callAs(w, func(c interface{ SetKeepAlive(bool) error }) error { return c.SetKeepAlive(false) })
		}, []opt{{"SO_KEEPALIVE", intOpt(syscall.SOL_SOCKET, syscall.SO_KEEPALIVE), 0}}},
		{"SetKeepAlivePeriod(37s)", tcp, func(w net.Conn) error {
			return callAs(w, func(c interface{ SetKeepAlivePeriod(time.Duration) error }) error {
				return c.SetKeepAlivePeriod(37 * time.Second)
			})
		}, []opt{{"TCP_KEEPIDLE", intOpt(syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE), 37}}},
		{"SetKeepAliveConfig(41s/7s/4)", tcp, func(w net.Conn) error {
			return callAs(w, func(c interface {
				SetKeepAliveConfig(net.KeepAliveConfig) error
			}) error {
				return c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 41 * time.Second, Interval: 7 * time.Second, Count: 4})
			})
		}, []opt{
			{"TCP_KEEPIDLE", intOpt(syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE), 41},
			{"TCP_KEEPINTVL", intOpt(syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL), 7},
			{"TCP_KEEPCNT", intOpt(syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT), 4},
		}},
		{"SetLinger(5)", tcp, func(w net.Conn) error {
			return callAs(w, func(c interface{ SetLinger(int) error }) error { return c.SetLinger(5) })
		}, []opt{{"SO_LINGER", lingerOpt, 5}}},
		// Linux doubles a buffer size it is given, for its bookkeeping.
		{"SetReadBuffer(16KiB)", all, func(w net.Conn) error {
			return callAs(w, func(c interface{ SetReadBuffer(int) error }) error { return c.SetReadBuffer(16 << 10) })
		}, []opt{{"SO_RCVBUF", intOpt(syscall.SOL_SOCKET, syscall.SO_RCVBUF), 32 << 10}}},
		{"SetWriteBuffer(16KiB)", all, func(w net.Conn) error {
			return callAs(w, func(c interface{ SetWriteBuffer(int) error }) error { return c.SetWriteBuffer(16 << 10) })
		}, []opt{{"SO_SNDBUF", intOpt(syscall.SOL_SOCKET, syscall.SO_SNDBUF), 32 << 10}}},
	} {
		for _, network := range tt.nets {
			t.Run(tt.name+"/"+network, func(t *testing.T) {
				var inner net.Conn
				switch network {
				case "tcp":
					inner, _ = tcpPair(t)
				case "unix":
					inner, _ = unixPair(t)
				case "udp":
					inner = udpConn(t)
				}
				sc := inner.(syscall.Conn)
				for _, o := range tt.want {
					if v := readOpt(t, sc, o.get); v == o.want {
						t.Fatalf("%s is %d before the call: the test proves nothing", o.name, v)
					}
				}
				w := (&Spy{}).WrapConn(inner, Client)
				defer w.Close()
				if err := tt.set(w); err != nil {
					t.Fatal(err)
				}
				for _, o := range tt.want {
					if v := readOpt(t, sc, o.get); v != o.want {
						t.Errorf("%s = %d after %s through the wrapper, want %d", o.name, v, tt.name, o.want)
					}
				}
			})
		}
	}
}

// TestSocketFileAndMultipath: File through a wrapper is a descriptor of
// the inner conn's socket, and MultipathTCP answers as the inner conn's.
func TestSocketFileAndMultipath(t *testing.T) {
	tc, _ := tcpPair(t)
	uc, _ := unixPair(t)
	for _, inner := range []net.Conn{tc, uc, udpConn(t)} {
		t.Run(fmt.Sprintf("%T", inner), func(t *testing.T) {
			w := (&Spy{}).WrapConn(inner, Client)
			defer w.Close()
			fc, ok := w.(interface{ File() (*os.File, error) })
			if !ok {
				t.Fatalf("%T has no File", w)
			}
			f, err := fc.File()
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var got, want syscall.Stat_t
			if err := syscall.Fstat(int(f.Fd()), &got); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Fstat(int(fdOf(t, inner.(syscall.Conn))), &want); err != nil {
				t.Fatal(err)
			}
			if got.Dev != want.Dev || got.Ino != want.Ino {
				t.Errorf("File is inode %d/%d, the socket is %d/%d", got.Dev, got.Ino, want.Dev, want.Ino)
			}
			tcp, isTCP := inner.(*net.TCPConn)
			if !isTCP {
				return
			}
			mp, ok := w.(interface{ MultipathTCP() (bool, error) })
			if !ok {
				t.Fatalf("%T has no MultipathTCP", w)
			}
			gotOn, gotErr := mp.MultipathTCP()
			wantOn, wantErr := tcp.MultipathTCP()
			if gotOn != wantOn || gotErr != wantErr {
				t.Errorf("MultipathTCP() = %v, %v; the inner conn says %v, %v", gotOn, gotErr, wantOn, wantErr)
			}
		})
	}
}

// TestLingerZeroClose: after SetLinger(0) through the wrapper, Close
// resets the connection (the peer reads ECONNRESET), and the spy reports
// one "Socket Close", by this side and without error: the reset is this
// program's own doing.
func TestLingerZeroClose(t *testing.T) {
	sink := newCaptureSink()
	spy := &Spy{Sink: sink}
	c, p := tcpPair(t)
	w := spy.WrapConn(c, Client)
	r := RecordOf(w)
	if err := callAs(w, func(c interface{ SetLinger(int) error }) error { return c.SetLinger(0) }); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	p.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := p.Read(make([]byte, 8)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("peer read %v, want ECONNRESET", err)
	}
	closes := sink.of(MsgClose, r)
	if len(closes) != 1 {
		t.Fatalf("%d %q events, want 1", len(closes), MsgClose)
	}
	if e := closes[0]; e.ClosedBy != "local" || e.HadError {
		t.Errorf("Socket Close has closedBy %q, hadError %v; want local, false", e.ClosedBy, e.HadError)
	}
	if st := spy.Stats(); st.Open != 0 {
		t.Errorf("Stats.Open = %d after Close", st.Open)
	}
}
