package connscope

import (
	"errors"
	"fmt"
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

type closeWriterI interface{ CloseWrite() error }
type closeReaderI interface{ CloseRead() error }

// The bits of fakeCtors' masks, one per group of optional methods (the
// order of gen_variants.go's caps).
const (
	capReadFrom = 1 << iota
	capWriteTo
	capCloseWrite
	capCloseRead
	capSyscallConn
	capPacketConn

	capTCPConn  = capReadFrom | capWriteTo | capCloseWrite | capCloseRead | capSyscallConn
	capUnixConn = capCloseWrite | capCloseRead | capSyscallConn | capPacketConn
	capUDPConn  = capSyscallConn | capPacketConn
)

// has reports whether c has the methods of T.
func has[T any](c net.Conn) bool {
	_, ok := c.(T)
	return ok
}

// optionalMethods are the methods a wrapper has only if its inner conn
// has them, each with its group's bit and a call on a wrapper of a fake,
// which says what is wrong with the result ("" if nothing).
var optionalMethods = []struct {
	bit  int
	name string
	has  func(net.Conn) bool
	call func(w net.Conn, r *Record) string
}{
	{capReadFrom, "ReadFrom(io.Reader)", has[io.ReaderFrom], func(w net.Conn, r *Record) string {
		if n, err := w.(io.ReaderFrom).ReadFrom(strings.NewReader("x")); n != 7 || err != errFakeReadFrom {
			return fmt.Sprintf("= %d, %v", n, err)
		}
		if r.BytesWritten() != 7 {
			return fmt.Sprintf("of 7 bytes counted BytesWritten = %d", r.BytesWritten())
		}
		return ""
	}},
	{capWriteTo, "WriteTo(io.Writer)", has[io.WriterTo], func(w net.Conn, r *Record) string {
		if n, err := w.(io.WriterTo).WriteTo(io.Discard); n != 9 || err != errFakeWriteTo {
			return fmt.Sprintf("= %d, %v", n, err)
		}
		if r.BytesRead() != 9 {
			return fmt.Sprintf("of 9 bytes counted BytesRead = %d", r.BytesRead())
		}
		return ""
	}},
	{capCloseWrite, "CloseWrite", has[closeWriterI], func(w net.Conn, _ *Record) string {
		if err := w.(closeWriterI).CloseWrite(); err != errFakeCloseWrite {
			return fmt.Sprintf("= %v", err)
		}
		return ""
	}},
	{capCloseRead, "CloseRead", has[closeReaderI], func(w net.Conn, _ *Record) string {
		if err := w.(closeReaderI).CloseRead(); err != errFakeCloseRead {
			return fmt.Sprintf("= %v", err)
		}
		return ""
	}},
	{capSyscallConn, "SyscallConn", has[syscall.Conn], func(w net.Conn, _ *Record) string {
		if _, err := w.(syscall.Conn).SyscallConn(); err != errFakeSyscallConn {
			return fmt.Sprintf("= %v", err)
		}
		return ""
	}},
	{capPacketConn, "PacketConn.ReadFrom", has[interface {
		ReadFrom([]byte) (int, net.Addr, error)
	}], func(w net.Conn, r *Record) string {
		if n, _, err := w.(net.PacketConn).ReadFrom(make([]byte, 8)); n != 5 || err != errFakePacketRead {
			return fmt.Sprintf("= %d, %v", n, err)
		}
		if r.BytesRead() != 5 {
			return fmt.Sprintf("of 5 bytes counted BytesRead = %d", r.BytesRead())
		}
		return ""
	}},
	{capPacketConn, "PacketConn.WriteTo", has[interface {
		WriteTo([]byte, net.Addr) (int, error)
	}], func(w net.Conn, r *Record) string {
		if n, err := w.(net.PacketConn).WriteTo([]byte("x"), nil); n != 6 || err != errFakePacketWrite {
			return fmt.Sprintf("= %d, %v", n, err)
		}
		if r.BytesWritten() != 6 {
			return fmt.Sprintf("of 6 bytes counted BytesWritten = %d", r.BytesWritten())
		}
		return ""
	}},
}

// TestCapabilitiesMethodSet checks, for each combination of optional
// methods a conn can have (capCombos, from gen_variants.go), that the
// wrapper has method M if and only if the inner conn has it, that M
// delegates to the inner conn's M, and that NetConn and Unwrap return the
// inner conn.
func TestCapabilitiesMethodSet(t *testing.T) {
	groups := 0
	for _, om := range optionalMethods {
		groups |= om.bit
	}
	if groups+1 != len(fakeCtors) {
		t.Fatalf("the test knows the groups %08b; gen_variants.go has %d masks", groups, len(fakeCtors))
	}
	spy := &Spy{}
	combos := 0
	for m, ctor := range fakeCtors {
		if ctor == nil {
			continue
		}
		combos++
		a, b := net.Pipe()
		inner := ctor(&fakeBase{a})
		w := spy.WrapConn(inner, Client)
		r := RecordOf(w)
		if r == nil {
			t.Fatalf("mask %08b: RecordOf(%T) = nil", m, w)
		}
		for _, om := range optionalMethods {
			want := m&om.bit != 0
			if om.has(inner) != want {
				t.Errorf("mask %08b: fake %T has %s = %v, its mask says %v", m, inner, om.name, !want, want)
			}
			if got := om.has(w); got != want {
				t.Errorf("mask %08b (%T): wrapper has %s = %v, inner has it = %v", m, w, om.name, got, want)
			} else if got {
				// Delegation: the fakes' results come back unchanged.
				if msg := om.call(w, r); msg != "" {
					t.Errorf("mask %08b: %s %s", m, om.name, msg)
				}
			}
		}
		if nc := w.(interface{ NetConn() net.Conn }).NetConn(); nc != inner {
			t.Errorf("mask %08b: NetConn() = %T, want the inner conn", m, nc)
		}
		if u := w.(interface{ Unwrap() net.Conn }).Unwrap(); u != inner {
			t.Errorf("mask %08b: Unwrap() = %T, want the inner conn", m, u)
		}
		if again := spy.WrapConn(w, Client); again != w {
			t.Errorf("mask %08b: wrapping a wrapped conn made a new wrapper", m)
		}
		w.Close()
		b.Close()
	}
	if st := spy.Stats(); combos != capCombos || st.Opened != capCombos || st.Open != 0 {
		t.Errorf("%d combinations, Stats = %+v; want %d, %d opened, 0 open", combos, st, capCombos, capCombos)
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
		name  string
		inner net.Conn
		mask  int // its groups of optional methods
	}{
		{"*net.TCPConn", tc, capTCPConn},
		{"*net.UnixConn", uc, capUnixConn},
		{"*net.UDPConn", udp, capUDPConn},
		{"net.Pipe", p1, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := spy.WrapConn(tt.inner, Client)
			defer w.Close()
			for _, om := range optionalMethods {
				want := tt.mask&om.bit != 0
				if om.has(tt.inner) != want {
					t.Fatalf("%T has %s = %v: the test's mask is wrong", tt.inner, om.name, !want)
				}
				if got := om.has(w); got != want {
					t.Errorf("wrapper %T has %s = %v, want %v", w, om.name, got, want)
				}
			}
			if nc := w.(interface{ NetConn() net.Conn }).NetConn(); nc != tt.inner {
				t.Errorf("NetConn() = %v, want the inner conn", nc)
			}
			sc, ok := w.(syscall.Conn)
			if !ok {
				return
			}
			if got, want := fdOf(t, sc), fdOf(t, tt.inner.(syscall.Conn)); got != want {
				t.Errorf("SyscallConn reached fd %d, inner conn has fd %d", got, want)
			}
		})
	}
}

func fdOf(t *testing.T, c syscall.Conn) uintptr {
	t.Helper()
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
