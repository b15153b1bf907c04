package connscope

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestNilSpyInstrumentsNothing: every method of a nil *Spy works and
// leaves what it is given as it was.
func TestNilSpyInstrumentsNothing(t *testing.T) {
	var s *Spy
	if st := s.Stats(); st != (Stats{}) {
		t.Errorf("Stats = %+v, want zero", st)
	}
	if s.Enabled() {
		t.Error("Enabled")
	}
	s.Emit(Event{Message: MsgConnect})
	s.TLSHandshake(nil, nil, 0, nil)
	c, _ := tcpPair(t)
	if w := s.WrapConn(c, Client); w != net.Conn(c) {
		t.Errorf("WrapConn returned %T, want the conn itself", w)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if w := s.WrapListener(ln); w != ln {
		t.Errorf("WrapListener returned %T, want the listener itself", w)
	}
	dial := s.WrapDial(nil)
	d, err := dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if RecordOf(d) != nil {
		t.Error("WrapDial of a nil Spy wrapped its conn")
	}
}

// TestListenerKeepsMethods: a wrapped listener has SetDeadline,
// SyscallConn and File exactly when the inner one has them, and they act
// on the inner listener: a deadline bounds Accept.
func TestListenerKeepsMethods(t *testing.T) {
	spy := &Spy{}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	unix, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close()
	type deadliner interface{ SetDeadline(time.Time) error }
	type filer interface{ File() (*os.File, error) }
	for _, tc := range []struct {
		name       string
		ln         net.Listener
		dl, sc, fi bool
	}{
		{"*net.TCPListener", tcp, true, true, true},
		{"*net.UnixListener", unix, true, true, true},
		{"none", struct{ net.Listener }{tcp}, false, false, false},
		{"SetDeadline only", struct {
			net.Listener
			deadliner
		}{tcp, tcp.(deadliner)}, true, false, false},
		{"SyscallConn and File", struct {
			net.Listener
			syscall.Conn
			filer
		}{tcp, tcp.(syscall.Conn), tcp.(filer)}, false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := spy.WrapListener(tc.ln)
			_, dl := w.(deadliner)
			_, sc := w.(syscall.Conn)
			_, fi := w.(filer)
			if got, want := [3]bool{dl, sc, fi}, [3]bool{tc.dl, tc.sc, tc.fi}; got != want {
				t.Fatalf("wrapper %T has [SetDeadline SyscallConn File] = %v, want %v", w, got, want)
			}
			if u := w.(interface{ Unwrap() net.Listener }).Unwrap(); u != tc.ln {
				t.Errorf("Unwrap() = %T, want the inner listener", u)
			}
			if dl {
				w.(deadliner).SetDeadline(time.Now().Add(-time.Second))
				if _, err := w.Accept(); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("Accept past the deadline: %v, want os.ErrDeadlineExceeded", err)
				}
				w.(deadliner).SetDeadline(time.Time{})
			}
			if fi {
				f, err := w.(filer).File()
				if err != nil {
					t.Fatal(err)
				}
				f.Close()
			}
			if sc {
				rc, err := w.(syscall.Conn).SyscallConn()
				if err != nil || rc.Control(func(uintptr) {}) != nil {
					t.Errorf("SyscallConn: %v", err)
				}
			}
		})
	}
}
