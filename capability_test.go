package connscope

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
)

// Sentinel results of the fake optional methods: a wrapper that returns
// them delegated to the inner conn.
var (
	errFakeReadFrom    = errors.New("fake ReadFrom")
	errFakeWriteTo     = errors.New("fake WriteTo")
	errFakeCloseWrite  = errors.New("fake CloseWrite")
	errFakeCloseRead   = errors.New("fake CloseRead")
	errFakeSyscallConn = errors.New("fake SyscallConn")
)

// fakeBase is a net.Conn with no optional method (one end of a net.Pipe).
type fakeBase struct{ net.Conn }

type fRF struct{}

func (fRF) ReadFrom(io.Reader) (int64, error) { return 7, errFakeReadFrom }

type fWT struct{}

func (fWT) WriteTo(io.Writer) (int64, error) { return 9, errFakeWriteTo }

type fCW struct{}

func (fCW) CloseWrite() error { return errFakeCloseWrite }

type fCR struct{}

func (fCR) CloseRead() error { return errFakeCloseRead }

type fSC struct{}

func (fSC) SyscallConn() (syscall.RawConn, error) { return nil, errFakeSyscallConn }

type fake00 struct {
	*fakeBase
}

type fake01 struct {
	*fakeBase
	fRF
}

type fake02 struct {
	*fakeBase
	fWT
}

type fake03 struct {
	*fakeBase
	fRF
	fWT
}

type fake04 struct {
	*fakeBase
	fCW
}

type fake05 struct {
	*fakeBase
	fRF
	fCW
}

type fake06 struct {
	*fakeBase
	fWT
	fCW
}

type fake07 struct {
	*fakeBase
	fRF
	fWT
	fCW
}

type fake08 struct {
	*fakeBase
	fCR
}

type fake09 struct {
	*fakeBase
	fRF
	fCR
}

type fake10 struct {
	*fakeBase
	fWT
	fCR
}

type fake11 struct {
	*fakeBase
	fRF
	fWT
	fCR
}

type fake12 struct {
	*fakeBase
	fCW
	fCR
}

type fake13 struct {
	*fakeBase
	fRF
	fCW
	fCR
}

type fake14 struct {
	*fakeBase
	fWT
	fCW
	fCR
}

type fake15 struct {
	*fakeBase
	fRF
	fWT
	fCW
	fCR
}

type fake16 struct {
	*fakeBase
	fSC
}

type fake17 struct {
	*fakeBase
	fRF
	fSC
}

type fake18 struct {
	*fakeBase
	fWT
	fSC
}

type fake19 struct {
	*fakeBase
	fRF
	fWT
	fSC
}

type fake20 struct {
	*fakeBase
	fCW
	fSC
}

type fake21 struct {
	*fakeBase
	fRF
	fCW
	fSC
}

type fake22 struct {
	*fakeBase
	fWT
	fCW
	fSC
}

type fake23 struct {
	*fakeBase
	fRF
	fWT
	fCW
	fSC
}

type fake24 struct {
	*fakeBase
	fCR
	fSC
}

type fake25 struct {
	*fakeBase
	fRF
	fCR
	fSC
}

type fake26 struct {
	*fakeBase
	fWT
	fCR
	fSC
}

type fake27 struct {
	*fakeBase
	fRF
	fWT
	fCR
	fSC
}

type fake28 struct {
	*fakeBase
	fCW
	fCR
	fSC
}

type fake29 struct {
	*fakeBase
	fRF
	fCW
	fCR
	fSC
}

type fake30 struct {
	*fakeBase
	fWT
	fCW
	fCR
	fSC
}

type fake31 struct {
	*fakeBase
	fRF
	fWT
	fCW
	fCR
	fSC
}

// fakeCtors[m] builds a conn with the optional methods of bit mask m
// (1 ReadFrom, 2 WriteTo, 4 CloseWrite, 8 CloseRead, 16 SyscallConn).
var fakeCtors = [32]func(*fakeBase) net.Conn{
	func(b *fakeBase) net.Conn { return fake00{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake01{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake02{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake03{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake04{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake05{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake06{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake07{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake08{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake09{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake10{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake11{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake12{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake13{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake14{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake15{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake16{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake17{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake18{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake19{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake20{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake21{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake22{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake23{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake24{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake25{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake26{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake27{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake28{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake29{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake30{fakeBase: b} },
	func(b *fakeBase) net.Conn { return fake31{fakeBase: b} },
}

type closeWriterI interface{ CloseWrite() error }
type closeReaderI interface{ CloseRead() error }

// TestCapabilitiesMethodSet checks, for each of the 32 combinations of
// optional methods, that the wrapper has method M if and only if the
// inner conn has it, that M delegates to the inner conn's M, and that
// NetConn and Unwrap return the inner conn.
func TestCapabilitiesMethodSet(t *testing.T) {
	spy := &Spy{}
	for m := range 32 {
		a, b := net.Pipe()
		inner := fakeCtors[m](&fakeBase{a})
		w := spy.WrapConn(inner, Client)

		_, rf := w.(io.ReaderFrom)
		_, wt := w.(io.WriterTo)
		_, cw := w.(closeWriterI)
		_, cr := w.(closeReaderI)
		_, sc := w.(syscall.Conn)
		got := [5]bool{rf, wt, cw, cr, sc}
		for i, name := range [5]string{"io.ReaderFrom", "io.WriterTo", "CloseWrite", "CloseRead", "SyscallConn"} {
			if want := m&(1<<i) != 0; got[i] != want {
				t.Errorf("mask %05b (%T): wrapper has %s = %v, inner has it = %v", m, w, name, got[i], want)
			}
		}
		r := RecordOf(w)
		if r == nil {
			t.Fatalf("mask %05b: RecordOf(%T) = nil", m, w)
		}
		if nc := w.(interface{ NetConn() net.Conn }).NetConn(); nc != inner {
			t.Errorf("mask %05b: NetConn() = %T, want the inner conn", m, nc)
		}
		if u := w.(interface{ Unwrap() net.Conn }).Unwrap(); u != inner {
			t.Errorf("mask %05b: Unwrap() = %T, want the inner conn", m, u)
		}
		if again := spy.WrapConn(w, Client); again != w {
			t.Errorf("mask %05b: wrapping a wrapped conn made a new wrapper", m)
		}
		// Delegation: the fakes' sentinel results come back unchanged.
		if rf {
			if n, err := w.(io.ReaderFrom).ReadFrom(strings.NewReader("x")); n != 7 || err != errFakeReadFrom {
				t.Errorf("mask %05b: ReadFrom = %d, %v", m, n, err)
			}
			if r.BytesWritten() != 7 {
				t.Errorf("mask %05b: ReadFrom of 7 bytes counted BytesWritten = %d", m, r.BytesWritten())
			}
		}
		if wt {
			if n, err := w.(io.WriterTo).WriteTo(io.Discard); n != 9 || err != errFakeWriteTo {
				t.Errorf("mask %05b: WriteTo = %d, %v", m, n, err)
			}
			if r.BytesRead() != 9 {
				t.Errorf("mask %05b: WriteTo of 9 bytes counted BytesRead = %d", m, r.BytesRead())
			}
		}
		if cw {
			if err := w.(closeWriterI).CloseWrite(); err != errFakeCloseWrite {
				t.Errorf("mask %05b: CloseWrite = %v", m, err)
			}
		}
		if cr {
			if err := w.(closeReaderI).CloseRead(); err != errFakeCloseRead {
				t.Errorf("mask %05b: CloseRead = %v", m, err)
			}
		}
		if sc {
			if _, err := w.(syscall.Conn).SyscallConn(); err != errFakeSyscallConn {
				t.Errorf("mask %05b: SyscallConn = %v", m, err)
			}
		}
		w.Close()
		b.Close()
	}
	if st := spy.Stats(); st.Opened != 32 || st.Open != 0 {
		t.Errorf("Stats = %+v, want 32 opened, 0 open", st)
	}
}

// TestCapabilitiesRealSockets checks the method sets of wrappers over the
// standard library's own connections, and that SyscallConn reaches the
// same file descriptor.
func TestCapabilitiesRealSockets(t *testing.T) {
	tc, _ := tcpPair(t)
	uc, _ := unixPair(t)
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	spy := &Spy{}
	for _, tt := range []struct {
		name               string
		inner              net.Conn
		rf, wt, cw, cr, sc bool
	}{
		{"*net.TCPConn", tc, true, true, true, true, true},
		{"*net.UnixConn", uc, false, false, true, true, true},
		{"net.Pipe", p1, false, false, false, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := spy.WrapConn(tt.inner, Client)
			defer w.Close()
			_, rf := w.(io.ReaderFrom)
			_, wt := w.(io.WriterTo)
			_, cw := w.(closeWriterI)
			_, cr := w.(closeReaderI)
			_, sc := w.(syscall.Conn)
			if got, want := [5]bool{rf, wt, cw, cr, sc}, [5]bool{tt.rf, tt.wt, tt.cw, tt.cr, tt.sc}; got != want {
				t.Errorf("wrapper %T has [ReaderFrom WriterTo CloseWrite CloseRead SyscallConn] = %v, want %v", w, got, want)
			}
			if nc := w.(interface{ NetConn() net.Conn }).NetConn(); nc != tt.inner {
				t.Errorf("NetConn() = %v, want the inner conn", nc)
			}
			if !sc {
				return
			}
			fdOf := func(c syscall.Conn) uintptr {
				rc, err := c.SyscallConn()
				if err != nil {
					t.Fatal(err)
				}
				var fd uintptr
				if err := rc.Control(func(f uintptr) { fd = f }); err != nil {
					t.Fatal(err)
				}
				return fd
			}
			if got, want := fdOf(w.(syscall.Conn)), fdOf(tt.inner.(syscall.Conn)); got != want {
				t.Errorf("SyscallConn reached fd %d, inner conn has fd %d", got, want)
			}
		})
	}
}
