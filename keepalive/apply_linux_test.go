package keepalive

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/connscope/connscope"
)

// pair dials ln with d and returns both ends.
func pair(t *testing.T, d *net.Dialer, ln net.Listener) (client, server *net.TCPConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
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

func TestApply(t *testing.T) {
	tests := []struct {
		name string
		s    Settings
		want Settings // as read back with getsockopt
	}{
		{"2/1/3 U=5s", Settings{Idle: 2 * sec, Interval: sec, Count: 3, UserTimeout: 5 * sec},
			Settings{Idle: 2 * sec, Interval: sec, Count: 3, UserTimeout: 5 * sec}},
		{"go default", GoDefault, GoDefault},
		{"off", Off, Settings{Idle: -1, Interval: -2}}, // Interval: -2 = don't compare
		{"U only, 1500ms", Settings{Idle: -1, UserTimeout: 1500 * time.Millisecond},
			Settings{Idle: -1, Interval: -2, UserTimeout: 1500 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lc net.ListenConfig
			if err := ApplyListen(&lc, tt.s); err != nil {
				t.Fatal(err)
			}
			ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var d net.Dialer
			if err := Apply(&d, tt.s); err != nil {
				t.Fatal(err)
			}
			c, s := pair(t, &d, ln)
			for name, conn := range map[string]*net.TCPConn{"dialed": c, "accepted": s} {
				got, err := Read(conn)
				if err != nil {
					t.Fatal(err)
				}
				if tt.want.Interval == -2 {
					got.Interval, got.Count = -2, 0
				}
				if got != tt.want {
					t.Errorf("%s conn: getsockopt says %+v, want %+v", name, got, tt.want)
				}
			}
		})
	}
}

// The kernel defaults stay when a field is zero ("OS default").
func TestApplyOSDefaults(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var d net.Dialer
	if err := Apply(&d, Settings{Idle: 7 * sec}); err != nil {
		t.Fatal(err)
	}
	c, _ := pair(t, &d, ln)
	got, err := Read(c)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ReadKernel()
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{Idle: 7 * sec, Interval: k.KeepaliveIntvl, Count: k.KeepaliveProbes}
	if got != want {
		t.Errorf("getsockopt says %+v, want %+v (kernel %+v)", got, want, k)
	}
}

// Apply keeps an existing Control or ControlContext function and calls it first.
func TestApplyChainsControl(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := Settings{Idle: 2 * sec, Interval: sec, Count: 3, UserTimeout: 3 * sec}

	called := 0
	d := net.Dialer{Control: func(network, address string, c syscall.RawConn) error { called++; return nil }}
	if err := Apply(&d, s); err != nil {
		t.Fatal(err)
	}
	c, _ := pair(t, &d, ln)
	if got, _ := Read(c); called != 1 || got.UserTimeout != 3*sec {
		t.Errorf("Control called %d times, user timeout %v", called, got.UserTimeout)
	}

	ctxCalled := 0
	d = net.Dialer{ControlContext: func(ctx context.Context, network, address string, c syscall.RawConn) error { ctxCalled++; return nil }}
	if err := Apply(&d, s); err != nil {
		t.Fatal(err)
	}
	c, _ = pair(t, &d, ln)
	if got, _ := Read(c); ctxCalled != 1 || got.UserTimeout != 3*sec {
		t.Errorf("ControlContext called %d times, user timeout %v", ctxCalled, got.UserTimeout)
	}

	// An error from the existing function wins and stops the dial.
	boom := errors.New("boom")
	d = net.Dialer{Control: func(network, address string, c syscall.RawConn) error { return boom }}
	if err := Apply(&d, s); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dial("tcp", ln.Addr().String()); !errors.Is(err, boom) {
		t.Errorf("Dial error = %v, want boom", err)
	}
}

// TCP_USER_TIMEOUT is refused on MPTCP sockets, so Apply turns MPTCP off.
func TestApplyDisablesMPTCP(t *testing.T) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	if err := ApplyListen(&lc, Settings{UserTimeout: 2 * sec}); err != nil {
		t.Fatal(err)
	}
	if lc.MultipathTCP() {
		t.Error("ListenConfig still uses MPTCP")
	}
	var d net.Dialer
	d.SetMultipathTCP(true)
	if err := Apply(&d, Settings{UserTimeout: 2 * sec}); err != nil {
		t.Fatal(err)
	}
	if d.MultipathTCP() {
		t.Error("Dialer still uses MPTCP")
	}
}

func TestApplyInvalid(t *testing.T) {
	var d net.Dialer
	if err := Apply(&d, Settings{Idle: 1500 * time.Millisecond}); err == nil {
		t.Error("Apply accepted a fractional idle time")
	}
	var lc net.ListenConfig
	if err := ApplyListen(&lc, Settings{Count: 1000}); err == nil {
		t.Error("ApplyListen accepted count 1000")
	}
}

// ApplyConn works on a connection wrapped by connscope, which keeps
// *net.TCPConn's SetKeepAliveConfig and SyscallConn: getsockopt on the
// real sockets shows the settings.
func TestApplyConnSpied(t *testing.T) {
	tests := []struct {
		name string
		s    Settings
		want Settings // as read back with getsockopt; Interval -2: don't compare
	}{
		{"4/2/5 U=1234ms", Settings{Idle: 4 * sec, Interval: 2 * sec, Count: 5, UserTimeout: 1234 * time.Millisecond},
			Settings{Idle: 4 * sec, Interval: 2 * sec, Count: 5, UserTimeout: 1234 * time.Millisecond}},
		{"off", Off, Settings{Idle: -1, Interval: -2}},
		{"off, U=1500ms", Settings{Idle: -1, UserTimeout: 1500 * time.Millisecond},
			Settings{Idle: -1, Interval: -2, UserTimeout: 1500 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// No MPTCP, which refuses TCP_USER_TIMEOUT on the accepted socket.
			var lc net.ListenConfig
			lc.SetMultipathTCP(false)
			ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			dialed, accepted := pair(t, &net.Dialer{}, ln)
			spy := &connscope.Spy{}
			for _, side := range []struct {
				name  string
				inner *net.TCPConn
				w     net.Conn
			}{
				{"dialed", dialed, spy.WrapConn(dialed, connscope.Client)},
				{"accepted", accepted, spy.WrapConn(accepted, connscope.Server)},
			} {
				if _, ok := side.w.(*net.TCPConn); ok {
					t.Fatalf("%s conn is not wrapped", side.name)
				}
				if err := ApplyConn(side.w, tt.s); err != nil {
					t.Fatalf("%s conn: ApplyConn(%T): %v", side.name, side.w, err)
				}
				got, err := Read(side.inner)
				if err != nil {
					t.Fatal(err)
				}
				if tt.want.Interval == -2 {
					got.Interval, got.Count = -2, 0
				}
				if got != tt.want {
					t.Errorf("%s conn: getsockopt says %+v, want %+v", side.name, got, tt.want)
				}
			}
		})
	}
}
