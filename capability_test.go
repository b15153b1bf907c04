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
	errFakePacketRead  = errors.New("fake PacketConn ReadFrom")
	errFakePacketWrite = errors.New("fake PacketConn WriteTo")
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

type fPC struct{}

func (fPC) ReadFrom([]byte) (int, net.Addr, error) { return 5, nil, errFakePacketRead }
func (fPC) WriteTo([]byte, net.Addr) (int, error)  { return 6, errFakePacketWrite }

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

type fake32 struct {
	*fakeBase
	fPC
}

type fake36 struct {
	*fakeBase
	fCW
	fPC
}

type fake40 struct {
	*fakeBase
	fCR
	fPC
}

type fake44 struct {
	*fakeBase
	fCW
	fCR
	fPC
}

type fake48 struct {
	*fakeBase
	fSC
	fPC
}

type fake52 struct {
	*fakeBase
	fCW
	fSC
	fPC
}

type fake56 struct {
	*fakeBase
	fCR
	fSC
	fPC
}

type fake60 struct {
	*fakeBase
	fCW
	fCR
	fSC
	fPC
}

// fakeCtors[m] builds a conn with the optional methods of bit mask m
// (1 ReadFrom, 2 WriteTo, 4 CloseWrite, 8 CloseRead, 16 SyscallConn, 32
// net.PacketConn), or is nil where no conn can have them: a PacketConn's
// ReadFrom and WriteTo take the names of io.ReaderFrom's and io.WriterTo's.
var fakeCtors = [64]func(*fakeBase) net.Conn{
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
	32: func(b *fakeBase) net.Conn { return fake32{fakeBase: b} },
	36: func(b *fakeBase) net.Conn { return fake36{fakeBase: b} },
	40: func(b *fakeBase) net.Conn { return fake40{fakeBase: b} },
	44: func(b *fakeBase) net.Conn { return fake44{fakeBase: b} },
	48: func(b *fakeBase) net.Conn { return fake48{fakeBase: b} },
	52: func(b *fakeBase) net.Conn { return fake52{fakeBase: b} },
	56: func(b *fakeBase) net.Conn { return fake56{fakeBase: b} },
	60: func(b *fakeBase) net.Conn { return fake60{fakeBase: b} },
}

type closeWriterI interface{ CloseWrite() error }
type closeReaderI interface{ CloseRead() error }

// TestCapabilitiesMethodSet checks, for each of the 40 combinations of
// optional methods a conn can have, that the wrapper has method M if and
// only if the inner conn has it, that M delegates to the inner conn's M,
// and that NetConn and Unwrap return the inner conn.
func TestCapabilitiesMethodSet(t *testing.T) {
	spy := &Spy{}
	combos := 0
	for m := range len(fakeCtors) {
		if fakeCtors[m] == nil {
			continue
		}
		combos++
		a, b := net.Pipe()
		inner := fakeCtors[m](&fakeBase{a})
		w := spy.WrapConn(inner, Client)

		_, rf := w.(io.ReaderFrom)
		_, wt := w.(io.WriterTo)
		_, cw := w.(closeWriterI)
		_, cr := w.(closeReaderI)
		_, sc := w.(syscall.Conn)
		_, pc := w.(net.PacketConn)
		got := [6]bool{rf, wt, cw, cr, sc, pc}
		for i, name := range [6]string{"io.ReaderFrom", "io.WriterTo", "CloseWrite", "CloseRead", "SyscallConn", "net.PacketConn"} {
			if want := m&(1<<i) != 0; got[i] != want {
				t.Errorf("mask %06b (%T): wrapper has %s = %v, inner has it = %v", m, w, name, got[i], want)
			}
		}
		r := RecordOf(w)
		if r == nil {
			t.Fatalf("mask %06b: RecordOf(%T) = nil", m, w)
		}
		if nc := w.(interface{ NetConn() net.Conn }).NetConn(); nc != inner {
			t.Errorf("mask %06b: NetConn() = %T, want the inner conn", m, nc)
		}
		if u := w.(interface{ Unwrap() net.Conn }).Unwrap(); u != inner {
			t.Errorf("mask %06b: Unwrap() = %T, want the inner conn", m, u)
		}
		if again := spy.WrapConn(w, Client); again != w {
			t.Errorf("mask %06b: wrapping a wrapped conn made a new wrapper", m)
		}
		// Delegation: the fakes' sentinel results come back unchanged.
		if rf {
			if n, err := w.(io.ReaderFrom).ReadFrom(strings.NewReader("x")); n != 7 || err != errFakeReadFrom {
				t.Errorf("mask %06b: ReadFrom = %d, %v", m, n, err)
			}
			if r.BytesWritten() != 7 {
				t.Errorf("mask %06b: ReadFrom of 7 bytes counted BytesWritten = %d", m, r.BytesWritten())
			}
		}
		if wt {
			if n, err := w.(io.WriterTo).WriteTo(io.Discard); n != 9 || err != errFakeWriteTo {
				t.Errorf("mask %06b: WriteTo = %d, %v", m, n, err)
			}
			if r.BytesRead() != 9 {
				t.Errorf("mask %06b: WriteTo of 9 bytes counted BytesRead = %d", m, r.BytesRead())
			}
		}
		if cw {
			if err := w.(closeWriterI).CloseWrite(); err != errFakeCloseWrite {
				t.Errorf("mask %06b: CloseWrite = %v", m, err)
			}
		}
		if cr {
			if err := w.(closeReaderI).CloseRead(); err != errFakeCloseRead {
				t.Errorf("mask %06b: CloseRead = %v", m, err)
			}
		}
		if sc {
			if _, err := w.(syscall.Conn).SyscallConn(); err != errFakeSyscallConn {
				t.Errorf("mask %06b: SyscallConn = %v", m, err)
			}
		}
		if pc {
			if n, _, err := w.(net.PacketConn).ReadFrom(make([]byte, 8)); n != 5 || err != errFakePacketRead {
				t.Errorf("mask %06b: PacketConn ReadFrom = %d, %v", m, n, err)
			}
			if n, err := w.(net.PacketConn).WriteTo([]byte("x"), nil); n != 6 || err != errFakePacketWrite {
				t.Errorf("mask %06b: PacketConn WriteTo = %d, %v", m, n, err)
			}
			if r.BytesRead() != 5 || r.BytesWritten() != 6 {
				t.Errorf("mask %06b: PacketConn counted %d read, %d written; want 5, 6", m, r.BytesRead(), r.BytesWritten())
			}
		}
		w.Close()
		b.Close()
	}
	if st := spy.Stats(); combos != 40 || st.Opened != 40 || st.Open != 0 {
		t.Errorf("%d combinations, Stats = %+v; want 40, 40 opened, 0 open", combos, st)
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
	udp := udpConn(t)
	for _, tt := range []struct {
		name                   string
		inner                  net.Conn
		rf, wt, cw, cr, sc, pc bool
	}{
		{"*net.TCPConn", tc, true, true, true, true, true, false},
		{"*net.UnixConn", uc, false, false, true, true, true, true},
		{"*net.UDPConn", udp, false, false, false, false, true, true},
		{"net.Pipe", p1, false, false, false, false, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := spy.WrapConn(tt.inner, Client)
			defer w.Close()
			_, rf := w.(io.ReaderFrom)
			_, wt := w.(io.WriterTo)
			_, cw := w.(closeWriterI)
			_, cr := w.(closeReaderI)
			_, sc := w.(syscall.Conn)
			_, pc := w.(net.PacketConn)
			if got, want := [6]bool{rf, wt, cw, cr, sc, pc}, [6]bool{tt.rf, tt.wt, tt.cw, tt.cr, tt.sc, tt.pc}; got != want {
				t.Errorf("wrapper %T has [ReaderFrom WriterTo CloseWrite CloseRead SyscallConn PacketConn] = %v, want %v", w, got, want)
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
