package connscope

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
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

// fakeCall is the error of a fake socket-option method: its name and its
// argument, so that a test sees both passed through.
type fakeCall struct {
	method string
	arg    any
}

func (e fakeCall) Error() string { return fmt.Sprintf("fake %s(%v)", e.method, e.arg) }

// fakeFile is what the fakes' File returns.
var fakeFile = new(os.File)

type fBF struct{}

func (fBF) SetReadBuffer(n int) error  { return fakeCall{"SetReadBuffer", n} }
func (fBF) SetWriteBuffer(n int) error { return fakeCall{"SetWriteBuffer", n} }
func (fBF) File() (*os.File, error)    { return fakeFile, fakeCall{"File", nil} }

type fTO struct{}

func (fTO) SetNoDelay(b bool) error                  { return fakeCall{"SetNoDelay", b} }
func (fTO) SetKeepAlive(b bool) error                { return fakeCall{"SetKeepAlive", b} }
func (fTO) SetKeepAlivePeriod(d time.Duration) error { return fakeCall{"SetKeepAlivePeriod", d} }
func (fTO) SetKeepAliveConfig(c net.KeepAliveConfig) error {
	return fakeCall{"SetKeepAliveConfig", c}
}
func (fTO) SetLinger(sec int) error     { return fakeCall{"SetLinger", sec} }
func (fTO) MultipathTCP() (bool, error) { return true, fakeCall{"MultipathTCP", nil} }

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
	capBufferFile // SetReadBuffer, SetWriteBuffer, File
	capTCPOptions // SetNoDelay, SetKeepAlive..., SetLinger, MultipathTCP

	capTCPConn  = capReadFrom | capWriteTo | capCloseWrite | capCloseRead | capSyscallConn | capBufferFile | capTCPOptions
	capUnixConn = capCloseWrite | capCloseRead | capSyscallConn | capPacketConn | capBufferFile
	capUDPConn  = capSyscallConn | capPacketConn | capBufferFile
)

// has reports whether c has the methods of T.
func has[T any](c net.Conn) bool {
	_, ok := c.(T)
	return ok
}

// wantCall says what is wrong ("" if nothing) with err, the result of a
// fake socket-option method called through a wrapper.
func wantCall(err error, want fakeCall) string {
	if err != want {
		return fmt.Sprintf("= %v, want %v", err, want)
	}
	return ""
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
	{capBufferFile, "SetReadBuffer", has[interface{ SetReadBuffer(int) error }], func(w net.Conn, _ *Record) string {
		return wantCall(w.(interface{ SetReadBuffer(int) error }).SetReadBuffer(4321), fakeCall{"SetReadBuffer", 4321})
	}},
	{capBufferFile, "SetWriteBuffer", has[interface{ SetWriteBuffer(int) error }], func(w net.Conn, _ *Record) string {
		return wantCall(w.(interface{ SetWriteBuffer(int) error }).SetWriteBuffer(8765), fakeCall{"SetWriteBuffer", 8765})
	}},
	{capBufferFile, "File", has[interface{ File() (*os.File, error) }], func(w net.Conn, _ *Record) string {
		f, err := w.(interface{ File() (*os.File, error) }).File()
		if f != fakeFile {
			return fmt.Sprintf("returned %p, not the inner conn's file", f)
		}
		return wantCall(err, fakeCall{"File", nil})
	}},
	{capTCPOptions, "SetNoDelay", has[interface{ SetNoDelay(bool) error }], func(w net.Conn, _ *Record) string {
		return wantCall(w.(interface{ SetNoDelay(bool) error }).SetNoDelay(false), fakeCall{"SetNoDelay", false})
	}},
	{capTCPOptions, "SetKeepAlive", has[interface{ SetKeepAlive(bool) error }], func(w net.Conn, _ *Record) string {
		return wantCall(w.(interface{ SetKeepAlive(bool) error }).SetKeepAlive(true), fakeCall{"SetKeepAlive", true})
	}},
	{capTCPOptions, "SetKeepAlivePeriod", has[interface{ SetKeepAlivePeriod(time.Duration) error }], func(w net.Conn, _ *Record) string {
		return wantCall(w.(interface{ SetKeepAlivePeriod(time.Duration) error }).SetKeepAlivePeriod(37*time.Second), fakeCall{"SetKeepAlivePeriod", 37 * time.Second})
	}},
	{capTCPOptions, "SetKeepAliveConfig", has[interface {
		SetKeepAliveConfig(net.KeepAliveConfig) error
	}], func(w net.Conn, _ *Record) string {
		cfg := net.KeepAliveConfig{Enable: true, Idle: 41 * time.Second, Interval: 7 * time.Second, Count: 4}
		return wantCall(w.(interface {
			SetKeepAliveConfig(net.KeepAliveConfig) error
		}).SetKeepAliveConfig(cfg), fakeCall{"SetKeepAliveConfig", cfg})
	}},
	{capTCPOptions, "SetLinger", has[interface{ SetLinger(int) error }], func(w net.Conn, _ *Record) string {
		return wantCall(w.(interface{ SetLinger(int) error }).SetLinger(3), fakeCall{"SetLinger", 3})
	}},
	{capTCPOptions, "MultipathTCP", has[interface{ MultipathTCP() (bool, error) }], func(w net.Conn, _ *Record) string {
		on, err := w.(interface{ MultipathTCP() (bool, error) }).MultipathTCP()
		if !on {
			return "returned false, not the inner conn's true"
		}
		return wantCall(err, fakeCall{"MultipathTCP", nil})
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

// Fakes with TCP options but not all the rest of *net.TCPConn's methods:
// no variant has that, so the wrapper keeps the rest.
type (
	fakeCloseWriteOptions struct {
		*fakeBase
		fCW
		fTO
	}
	fakeTCPOptionsNoFile struct {
		*fakeBase
		fRF
		fWT
		fCW
		fCR
		fSC
		fTO
	}
)

// TestCapabilitiesPartialTCPOptions: a conn whose TCP options come
// without the rest of *net.TCPConn's methods loses only the options.
func TestCapabilitiesPartialTCPOptions(t *testing.T) {
	spy := &Spy{}
	for _, tt := range []struct {
		name string
		ctor func(*fakeBase) net.Conn
		want int // the wrapper's groups
	}{
		{"CloseWrite and options", func(b *fakeBase) net.Conn { return fakeCloseWriteOptions{fakeBase: b} }, capCloseWrite},
		{"TCP's but buffers and File", func(b *fakeBase) net.Conn { return fakeTCPOptionsNoFile{fakeBase: b} },
			capReadFrom | capWriteTo | capCloseWrite | capCloseRead | capSyscallConn},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer b.Close()
			w := spy.WrapConn(tt.ctor(&fakeBase{a}), Client)
			defer w.Close()
			for _, om := range optionalMethods {
				if got, want := om.has(w), tt.want&om.bit != 0; got != want {
					t.Errorf("wrapper %T has %s = %v, want %v", w, om.name, got, want)
				}
			}
		})
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
