package connscope

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sameError fails unless got (through the wrapper) and want (from a bare
// conn in the same situation) are the same kind of value: identical
// dynamic types, same Op/Net and inner error for a *net.OpError, the same
// answers to errors.Is for the sentinels callers test, and the same
// net.Error verdict.
func sameError(t *testing.T, what string, got, want error) {
	t.Helper()
	if reflect.TypeOf(got) != reflect.TypeOf(want) {
		t.Errorf("%s: wrapped error is %T (%v), bare is %T (%v)", what, got, got, want, want)
		return
	}
	if got == nil {
		return
	}
	var gop, wop *net.OpError
	if errors.As(got, &gop) && errors.As(want, &wop) {
		if gop.Op != wop.Op || gop.Net != wop.Net || reflect.TypeOf(gop.Err) != reflect.TypeOf(wop.Err) || gop.Err.Error() != wop.Err.Error() {
			t.Errorf("%s: wrapped %#v, bare %#v", what, gop, wop)
		}
	}
	for _, target := range []error{io.EOF, os.ErrDeadlineExceeded, net.ErrClosed, syscall.ECONNRESET, syscall.EPIPE, syscall.ECONNREFUSED} {
		if errors.Is(got, target) != errors.Is(want, target) {
			t.Errorf("%s: errors.Is(wrapped, %v) = %v, bare %v", what, target, errors.Is(got, target), errors.Is(want, target))
		}
	}
	var gne, wne net.Error
	if errors.As(got, &gne) != errors.As(want, &wne) || (gne != nil && gne.Timeout() != wne.Timeout()) {
		t.Errorf("%s: net.Error: wrapped %v, bare %v", what, gne, wne)
	}
}

var aLongTimeAgo = time.Unix(1, 0) // what net/http sets to interrupt a read

// TestErrorsUnchanged puts a bare and a wrapped TCP conn in the same
// situation and compares the errors, and checks the event (or the absence
// of one) that the spy reports on the side.
func TestErrorsUnchanged(t *testing.T) {
	for _, tc := range []struct {
		name string
		// run provokes the error on c, whose peer is p.
		run     func(t *testing.T, c, p net.Conn) error
		wantMsg string // event on c's record; "" for none among Error/Timeout
		wantOp  string
		errno   string
	}{
		{
			name: "EOF",
			run: func(t *testing.T, c, p net.Conn) error {
				p.Close()
				_, err := c.Read(make([]byte, 8))
				if err != io.EOF {
					t.Errorf("err == io.EOF is false for %#v", err)
				}
				return err
			},
			wantMsg: MsgEnd,
		},
		{
			name: "read deadline",
			run: func(t *testing.T, c, p net.Conn) error {
				c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				_, err := c.Read(make([]byte, 8))
				return err
			},
			wantMsg: MsgTimeout, wantOp: "read",
		},
		{
			name: "write deadline",
			run: func(t *testing.T, c, p net.Conn) error {
				c.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
				buf := make([]byte, 1<<20)
				for range 1000 { // the peer does not read: the buffers fill, then the deadline hits
					if _, err := c.Write(buf); err != nil {
						return err
					}
				}
				t.Fatal("writes never blocked")
				return nil
			},
			wantMsg: MsgTimeout, wantOp: "write",
		},
		{
			name: "read deadline in the past (interrupt)",
			run: func(t *testing.T, c, p net.Conn) error {
				c.SetReadDeadline(aLongTimeAgo)
				_, err := c.Read(make([]byte, 8))
				return err
			},
		},
		{
			name: "blocked read interrupted like net/http does",
			run: func(t *testing.T, c, p net.Conn) error {
				c.SetReadDeadline(time.Now().Add(testTimeout))
				errc := make(chan error, 1)
				go func() {
					_, err := c.Read(make([]byte, 8))
					errc <- err
				}()
				time.Sleep(20 * time.Millisecond) // let it block (either way the result is the same)
				c.SetReadDeadline(aLongTimeAgo)
				return <-errc
			},
		},
		{
			name: "read after own Close",
			run: func(t *testing.T, c, p net.Conn) error {
				c.Close()
				_, err := c.Read(make([]byte, 8))
				return err
			},
		},
		{
			name: "second Close",
			run: func(t *testing.T, c, p net.Conn) error {
				c.Close()
				return c.Close()
			},
		},
		{
			name: "ECONNRESET (peer closes with SO_LINGER 0)",
			run: func(t *testing.T, c, p net.Conn) error {
				linger(t, p)
				p.Close()
				c.SetReadDeadline(time.Now().Add(testTimeout))
				_, err := c.Read(make([]byte, 8))
				return err
			},
			wantMsg: MsgError, wantOp: "read", errno: "ECONNRESET",
		},
		{
			name: "EPIPE (write after reset)",
			run: func(t *testing.T, c, p net.Conn) error {
				linger(t, p)
				p.Close()
				c.SetDeadline(time.Now().Add(testTimeout))
				c.Read(make([]byte, 8)) // consume the reset
				_, err := c.Write([]byte("x"))
				return err
			},
			wantMsg: MsgError, wantOp: "write", errno: "EPIPE",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bc, bp := tcpPair(t)
			bare := tc.run(t, bc, bp)

			sink := newCaptureSink()
			spy := &Spy{Sink: sink}
			wc, wp := tcpPair(t)
			c := spy.WrapConn(wc, Client)
			wrapped := tc.run(t, c, wp)

			if bare == nil {
				t.Fatalf("bare conn gave no error")
			}
			sameError(t, tc.name, wrapped, bare)

			r := RecordOf(c)
			var errEvents []Event
			for _, e := range sink.all() {
				if e.Conn == r && (e.Message == MsgError || e.Message == MsgTimeout || e.Message == MsgEnd) {
					errEvents = append(errEvents, e)
				}
			}
			if tc.wantMsg == "" {
				if len(errEvents) != 0 {
					t.Fatalf("got %q (%v), want no error event", errEvents[0].Message, errEvents[0].Err)
				}
				return
			}
			if len(errEvents) < 1 || errEvents[len(errEvents)-1].Message != tc.wantMsg {
				t.Fatalf("events %v, want %q last", sink.messages(), tc.wantMsg)
			}
			e := errEvents[len(errEvents)-1] // the one the provoked call caused
			if e.Op != tc.wantOp {
				t.Errorf("op = %q, want %q", e.Op, tc.wantOp)
			}
			if tc.wantMsg != MsgEnd && e.Err != wrapped {
				t.Errorf("event error %v is not the error returned (%v)", e.Err, wrapped)
			}
			if _, errno := Classify(e.Err); errno != tc.errno {
				t.Errorf("errno = %q, want %q", errno, tc.errno)
			}
			if tc.wantMsg == MsgError {
				c.Close()
				closes := sink.of(MsgClose, r)
				if len(closes) != 1 || !closes[0].HadError || closes[0].ClosedBy != "remote" {
					t.Errorf("Socket Close after a reset = %+v; want hadError true, closedBy remote", closes)
				}
				if ci := r.Snapshot(); ci.LastErrorOp != tc.wantOp || ci.LastError == "" {
					t.Errorf("Snapshot last error = %q/%q", ci.LastErrorOp, ci.LastError)
				}
			}
		})
	}
}

func linger(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
}

// TestDialRefused: a refused dial returns the dialer's error unchanged and
// reports "Socket Error" with op "dial" and no connection.
func TestDialRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, bare := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	sink := newCaptureSink()
	spy := &Spy{Sink: sink}
	c, wrapped := spy.WrapDial(nil)(ctx, "tcp", addr)
	if c != nil {
		c.Close()
		t.Fatalf("dial to a closed port succeeded")
	}
	if bare == nil || !errors.Is(bare, syscall.ECONNREFUSED) {
		t.Fatalf("bare dial: %v, want ECONNREFUSED", bare)
	}
	sameError(t, "dial", wrapped, bare)
	evs := sink.of(MsgError, nil)
	if len(evs) != 1 {
		t.Fatalf("events %v, want one %q", sink.messages(), MsgError)
	}
	e := evs[0]
	if kind, errno := Classify(e.Err); e.Op != "dial" || e.Conn != nil || e.ID.IsZero() || kind != KindRefused || errno != "ECONNREFUSED" || e.Host != addr {
		t.Errorf("dial error event: op %q conn %v id %v kind %q errno %q host %q", e.Op, e.Conn, e.ID, kind, errno, e.Host)
	}
	if st := spy.Stats(); st.Opened != 0 || st.Open != 0 {
		t.Errorf("Stats after a failed dial = %+v", st)
	}
}

// asErr exposes an errno only through an As method.
type asErr struct{ errno syscall.Errno }

func (e asErr) Error() string { return "as: " + e.errno.Error() }
func (e asErr) As(target any) bool {
	if p, ok := target.(*syscall.Errno); ok {
		*p = e.errno
		return true
	}
	return false
}
func (e asErr) Is(target error) bool { return target == e.errno }

func TestClassify(t *testing.T) {
	opErr := func(op string, errno syscall.Errno) error {
		return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, errno)}
	}
	for _, tc := range []struct {
		err   error
		kind  string
		errno string
	}{
		{nil, "", ""},
		{io.EOF, KindEOF, ""},
		{io.ErrUnexpectedEOF, KindEOF, ""},
		{fmt.Errorf("wrapped: %w", io.EOF), KindEOF, ""},
		{os.ErrDeadlineExceeded, KindDeadline, ""},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, KindDeadline, ""},
		{context.DeadlineExceeded, KindDeadline, ""},
		{opErr("read", syscall.ETIMEDOUT), KindTimeout, "ETIMEDOUT"},
		{opErr("read", syscall.ECONNRESET), KindReset, "ECONNRESET"},
		{opErr("read", syscall.ECONNABORTED), KindReset, "ECONNABORTED"},
		{opErr("dial", syscall.ECONNREFUSED), KindRefused, "ECONNREFUSED"},
		{opErr("write", syscall.EPIPE), KindBrokenPipe, "EPIPE"},
		{opErr("dial", syscall.EHOSTUNREACH), KindUnreachable, "EHOSTUNREACH"},
		{opErr("dial", syscall.ENETUNREACH), KindUnreachable, "ENETUNREACH"},
		{&net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}, KindClosed, ""},
		{context.Canceled, KindCanceled, ""},
		{&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}}, KindDNS, ""},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, KindTLS, ""},
		{fmt.Errorf("remote error: %w", tls.AlertError(40)), KindTLS, ""},
		{&tls.CertificateVerificationError{Err: errors.New("x509: unknown authority")}, KindTLS, ""},
		{opErr("listen", syscall.EADDRINUSE), KindOther, "EADDRINUSE"},
		{opErr("socket", syscall.EMFILE), KindOther, "EMFILE"},
		{syscall.Errno(0xfff), KindOther, "errno 4095"},
		{errors.New("something else"), KindOther, ""},
		{errors.Join(errors.New("a"), opErr("read", syscall.ECONNRESET)), KindReset, "ECONNRESET"},
		{fmt.Errorf("x: %w", errors.Join(errors.New("a"), &net.DNSError{Err: "timeout"})), KindDNS, ""},
		{asErr{syscall.EPIPE}, KindBrokenPipe, "EPIPE"},
		// net/http's unexported errServerClosedIdle, as RoundTrip returns
		// it and as http.Client wraps it: the server's FIN on a pooled
		// connection that a request took (it was "other").
		{errors.New("http: server closed idle connection"), KindEOF, ""},
		{&url.Error{Op: "Post", URL: "http://127.0.0.1:1/", Err: errors.New("http: server closed idle connection")}, KindEOF, ""},
	} {
		name := "nil"
		if tc.err != nil {
			name = tc.err.Error()
		}
		t.Run(name, func(t *testing.T) {
			kind, errno := Classify(tc.err)
			if kind != tc.kind || errno != tc.errno {
				t.Errorf("Classify(%#v) = %q, %q; want %q, %q", tc.err, kind, errno, tc.kind, tc.errno)
			}
			if got := Errno(tc.err); got != tc.errno {
				t.Errorf("Errno = %q, want %q", got, tc.errno)
			}
		})
	}
}

// TestEncodeZeroAlloc: encoding an event, an error event included,
// allocates nothing (an error's own Error() method aside).
func TestEncodeZeroAlloc(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation changes allocation counts")
	}
	buf := make([]byte, 0, 4096)
	for name, e := range benchEvents() {
		if a := testing.AllocsPerRun(100, func() { buf = e.AppendJSON(buf[:0]) }); a != 0 {
			t.Errorf("AppendJSON(%s): %v allocs", name, a)
		}
		if a := testing.AllocsPerRun(100, func() { buf = e.AppendText(buf[:0]) }); a != 0 {
			t.Errorf("AppendText(%s): %v allocs", name, a)
		}
	}
	resetErr := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	if a := testing.AllocsPerRun(100, func() { Classify(resetErr) }); a != 0 {
		t.Errorf("Classify: %v allocs", a)
	}
}

// panicErr is an error whose methods panic when it is a typed nil, as a
// careless error type's do. A program that only checks err != nil never
// sees it; the spy, which prints and classifies every error, must not
// panic for it either (nor leave its sink locked).
type panicErr struct{ detail *string }

func (e *panicErr) Error() string        { return *e.detail }
func (e *panicErr) Is(target error) bool { return *e.detail == "" }

type panicErrConn struct{ net.Conn }

func (panicErrConn) Read([]byte) (int, error)  { return 0, (*panicErr)(nil) }
func (panicErrConn) Write([]byte) (int, error) { return 0, &panicErr{} }

func TestErrorWhoseMethodsPanic(t *testing.T) {
	for _, sink := range []struct {
		name string
		new  func(io.Writer) Sink
	}{
		{"json", func(w io.Writer) Sink { return NewJSONSink(w, nil) }},
		{"text", func(w io.Writer) Sink { return NewTextSink(w, nil) }},
		{"slog", func(w io.Writer) Sink {
			return NewSlogSink(slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
		}},
	} {
		t.Run(sink.name, func(t *testing.T) {
			buf := newMemWriter()
			s := sink.new(buf)
			spy := &Spy{Sink: s}
			a, b := net.Pipe()
			defer b.Close()
			c := spy.WrapConn(panicErrConn{a}, Client)
			if _, err := c.Read(make([]byte, 1)); err != (*panicErr)(nil) {
				t.Errorf("Read returned %#v, want the inner typed nil unchanged", err)
			}
			if _, err := c.Write([]byte("x")); err == nil {
				t.Error("Write: no error")
			}
			if info := RecordOf(c).Snapshot(); !strings.Contains(info.LastError, "panicked") {
				t.Errorf("Snapshot().LastError = %q, want a note that Error panicked", info.LastError)
			}
			done := make(chan struct{})
			go func() { c.Close(); close(done) }() // emits "Socket Close" through the same sink
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Close blocked: the sink was left locked")
			}
			// After Close, the spy asks whether an error is its own Close's.
			if _, err := c.Read(make([]byte, 1)); err != (*panicErr)(nil) {
				t.Errorf("Read after Close returned %#v, want the inner typed nil unchanged", err)
			}
			if ws, ok := s.(*WriterSink); ok {
				ws.Close()
			}
			if out := buf.String(); !strings.Contains(out, "Error method panicked") || !strings.Contains(out, MsgClose) {
				t.Errorf("events do not show the error note and the close:\n%s", out)
			}
		})
	}
}

// TestFailedEventsAreErrors: an event whose message is debug output on
// success (TLS Handshake, DNS Lookup) is an error when it carries one, so
// that a sink at slog.LevelWarn keeps it.
func TestFailedEventsAreErrors(t *testing.T) {
	client, _ := tcpPair(t)
	for _, tc := range []struct {
		name string
		err  error
		want slog.Level
	}{
		{"handshake done", nil, slog.LevelDebug},
		{"handshake failed", errors.New("tls: bad certificate"), slog.LevelError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newCaptureSink()
			spy := &Spy{Sink: sink}
			c := spy.WrapConn(client, Client)
			r := RecordOf(c)
			spy.TLSHandshake(r, nil, time.Millisecond, tc.err)
			got := sink.of(MsgTLS, r)
			if len(got) != 1 {
				t.Fatalf("%d TLS Handshake events, want 1", len(got))
			}
			if got[0].Level != tc.want {
				t.Errorf("level %v, want %v", got[0].Level, tc.want)
			}
		})
	}
	// A timeout keeps its own level: it is a warning with an error in it.
	sink := newCaptureSink()
	spy := &Spy{Sink: sink}
	spy.Emit(Event{Message: MsgTimeout, Err: os.ErrDeadlineExceeded})
	if got := sink.all(); len(got) != 1 || got[0].Level != slog.LevelWarn {
		t.Errorf("Socket Timeout: %+v, want one event at warn", got)
	}
}

// TestOneTimeoutPerDeadline: once a deadline has passed, every call fails
// at once with the same error until the program sets another, and
// net/http's server reads three times after its ReadHeaderTimeout: that
// is one "Socket Timeout", not three. A new deadline that passes is
// reported again, and so is a write deadline after a read one.
func TestOneTimeoutPerDeadline(t *testing.T) {
	sink := newCaptureSink()
	spy := &Spy{Sink: sink}
	wc, wp := tcpPair(t)
	defer wp.Close()
	c := spy.WrapConn(wc, Client)
	defer c.Close()
	timeouts := func() (read, write int) {
		for _, e := range sink.all() {
			if e.Message == MsgTimeout && e.Op == "read" {
				read++
			}
			if e.Message == MsgTimeout && e.Op == "write" {
				write++
			}
		}
		return read, write
	}
	buf := make([]byte, 8)
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	for range 3 {
		if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read: %v, want the deadline's error", err)
		}
	}
	if r, _ := timeouts(); r != 1 {
		t.Errorf("%d read timeouts for one deadline, want 1: %q", r, sink.messages())
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	c.Read(buf)
	if r, _ := timeouts(); r != 2 {
		t.Errorf("%d read timeouts for two deadlines, want 2: %q", r, sink.messages())
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
	big := make([]byte, 1<<20)
	for range 1000 { // the peer does not read: the buffers fill, then the deadline hits
		if _, err := c.Write(big); err != nil {
			break
		}
	}
	c.Write(big)
	if _, w := timeouts(); w != 1 {
		t.Errorf("%d write timeouts for one deadline, want 1: %q", w, sink.messages())
	}
}
