package connscope

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connscope/connscope/internal/selfsigned"
)

// TestRelayWriteErrorNotBlamedOnSource: a proxy copies from a spied
// backend to a client the spy does not wrap (io.Copy takes the backend's
// WriteTo). The client's side is shut for writing, so the copy fails with
// EPIPE, which only a write returns: the client's failure, not the
// backend's. The backend's record must stay clean: no "Socket Error", no
// hadError, closed by this side. With a spied client, the EPIPE is the
// client's write error.
func TestRelayWriteErrorNotBlamedOnSource(t *testing.T) {
	for _, tc := range []struct {
		name        string
		wrapClient  bool
		clientError bool // the client's record gets the write error
	}{
		{"unwrapped client", false, false},
		{"spied client", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newCaptureSink()
			spy := &Spy{Sink: sink}
			backendConn, backendPeer := tcpPair(t)
			clientConn, _ := tcpPair(t)
			backend := spy.WrapConn(backendConn, Client)
			var client net.Conn = clientConn
			if tc.wrapClient {
				client = spy.WrapConn(clientConn, Server)
			}
			if err := clientConn.CloseWrite(); err != nil { // writes to the client now fail with EPIPE
				t.Fatal(err)
			}
			if _, err := backendPeer.Write([]byte("response")); err != nil {
				t.Fatal(err)
			}
			backendConn.SetReadDeadline(time.Now().Add(testTimeout))
			_, err := io.Copy(client, backend)
			if kind, _ := Classify(err); kind != KindBrokenPipe {
				t.Fatalf("io.Copy: %v (kind %q), want EPIPE", err, kind)
			}
			br := RecordOf(backend)
			if errs := sink.of(MsgError, br); len(errs) != 0 {
				t.Errorf("backend got %d %q (op %q, %v): the client's EPIPE was blamed on it", len(errs), MsgError, errs[0].Op, errs[0].Err)
			}
			if cr := RecordOf(client); cr != nil {
				errs := sink.of(MsgError, cr)
				if got := len(errs) == 1 && errs[0].Op == "write"; got != tc.clientError {
					t.Errorf("client's errors %+v, want one with op write: %v", errs, tc.clientError)
				}
			}
			backend.Close()
			closes := sink.of(MsgClose, br)
			if len(closes) != 1 || closes[0].HadError || closes[0].ClosedBy != "local" {
				t.Errorf("backend's Socket Close %+v, want hadError=false closedBy=local", closes)
			}
		})
	}
}

// failingReader yields its data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// panickyError's Unwrap panics: the spy must not, where the program
// that never unwraps it would not.
type panickyError struct{}

func (panickyError) Error() string { return "panicky" }
func (panickyError) Unwrap() error { panic("Unwrap") }

// failingWriter fails every write with err.
type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// endlessReader yields zeros for ever.
type endlessReader struct{}

func (endlessReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// is returns a test for an error that is target.
func is(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

// tempFile returns a file of size zeros, open for reading and writing,
// closed when the test ends.
func tempFile(t *testing.T, size int) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// reset makes c's close send RST.
func reset(t *testing.T, c *net.TCPConn) {
	t.Helper()
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestRelayErrorOfOtherSideNotBlamedOnSocket: io.Copy between a spied
// connection and something the spy does not wrap (a reader, a writer, a
// file, another connection) that fails is not the connection failing:
// no "Socket Error" (or "Socket Timeout", or "Socket End") for it, not
// broken, closed by this side without error; the copy's error still
// reaches the caller unchanged. When the connection itself fails in
// such a copy (its peer resets it, its deadline expires, over the plain
// copy or sendfile), it is still recorded.
func TestRelayErrorOfOtherSideNotBlamedOnSocket(t *testing.T) {
	errBoom := errors.New("disk on fire")
	for _, tc := range []struct {
		name string
		// copy copies between w, the spied connection, and something
		// else, and returns the copy's error; peer is w's peer.
		copy         func(t *testing.T, w net.Conn, peer *net.TCPConn) error
		want         func(error) bool // what the copy's error must be, if anything
		socketFailed bool
	}{
		{"reader fails", func(t *testing.T, w net.Conn, _ *net.TCPConn) error {
			_, err := io.Copy(w, &failingReader{[]byte("partial"), errBoom})
			return err
		}, is(errBoom), false},
		{"reader fails with an error whose Unwrap panics", func(t *testing.T, w net.Conn, _ *net.TCPConn) error {
			_, err := io.Copy(w, &failingReader{[]byte("partial"), panickyError{}})
			return err
		}, func(err error) bool { return strings.Contains(err.Error(), "panicky") }, false},
		{"file read fails", func(t *testing.T, w net.Conn, _ *net.TCPConn) error {
			dir, err := os.Open(t.TempDir()) // reads fail with EISDIR
			if err != nil {
				t.Fatal(err)
			}
			defer dir.Close()
			_, err = io.Copy(w, dir)
			return err
		}, is(syscall.EISDIR), false},
		{"another connection's reset, through a reader", func(t *testing.T, w net.Conn, _ *net.TCPConn) error {
			up, upPeer := tcpPair(t) // not spied
			upPeer.Write([]byte("body"))
			reset(t, upPeer)
			up.SetReadDeadline(time.Now().Add(testTimeout))
			_, err := io.Copy(w, struct{ io.Reader }{up}) // a response body, say
			return err
		}, is(syscall.ECONNRESET), false},
		{"writer fails", func(t *testing.T, w net.Conn, peer *net.TCPConn) error {
			peer.Write([]byte("data"))
			_, err := io.Copy(failingWriter{errBoom}, w)
			return err
		}, is(errBoom), false},
		{"writer fails with io.ErrUnexpectedEOF", func(t *testing.T, w net.Conn, peer *net.TCPConn) error {
			peer.Write([]byte("data"))
			_, err := io.Copy(failingWriter{io.ErrUnexpectedEOF}, w)
			return err
		}, is(io.ErrUnexpectedEOF), false},
		{"file write fails", func(t *testing.T, w net.Conn, peer *net.TCPConn) error {
			// Writes to /dev/full fail with ENOSPC; splice, which os
			// tries first, with EINVAL, once it has read the socket.
			full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
			if err != nil {
				t.Skip(err)
			}
			defer full.Close()
			peer.Write([]byte("data"))
			_, err = io.Copy(full, w)
			return err
		}, func(err error) bool {
			var pe *fs.PathError
			return errors.As(err, &pe) && pe.Path == "/dev/full"
		}, false},

		{"closed TLS connection as the writer", func(t *testing.T, w net.Conn, peer *net.TCPConn) error {
			// A proxy's other half closed the client's connection: its
			// Write fails with a bare net.ErrClosed, as splice's would.
			peer.Write([]byte("data"))
			client := closedTLSConn(t)
			_, err := io.Copy(client, w)
			return err
		}, is(net.ErrClosed), false},
		{"reader fails with a deadline of its own", func(t *testing.T, w net.Conn, _ *net.TCPConn) error {
			_, err := io.Copy(w, &failingReader{[]byte("partial"), os.ErrDeadlineExceeded})
			return err
		}, is(os.ErrDeadlineExceeded), false},

		{"peer resets while sending a reader", func(t *testing.T, w net.Conn, peer *net.TCPConn) error {
			reset(t, peer)
			_, err := io.Copy(w, struct{ io.Reader }{endlessReader{}})
			return err
		}, nil, true},
		{"peer resets while receiving into a writer", func(t *testing.T, w net.Conn, peer *net.TCPConn) error {
			peer.Write([]byte("data"))
			reset(t, peer)
			_, err := io.Copy(struct{ io.Writer }{io.Discard}, w)
			return err
		}, is(syscall.ECONNRESET), true},
		{"peer resets while sending a file (sendfile)", func(t *testing.T, w net.Conn, peer *net.TCPConn) error {
			reset(t, peer)
			_, err := io.Copy(w, tempFile(t, 1<<20))
			return err
		}, nil, true},
		{"peer resets while receiving into a file (splice)", func(t *testing.T, w net.Conn, peer *net.TCPConn) error {
			peer.Write([]byte("data"))
			reset(t, peer)
			_, err := io.Copy(tempFile(t, 0), w)
			return err
		}, is(syscall.ECONNRESET), true},
		{"read deadline while receiving into a file (splice)", func(t *testing.T, w net.Conn, _ *net.TCPConn) error {
			w.SetReadDeadline(time.Now().Add(50 * time.Millisecond)) // the peer sends nothing
			_, err := io.Copy(tempFile(t, 0), w)
			return err
		}, is(os.ErrDeadlineExceeded), true},
		{"read deadline while receiving into a buffered file (splice)", func(t *testing.T, w net.Conn, _ *net.TCPConn) error {
			w.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			_, err := io.Copy(bufio.NewWriter(tempFile(t, 0)), w) // bufio hands the copy to the file's ReadFrom
			return err
		}, is(os.ErrDeadlineExceeded), true},
		{"write deadline while sending a reader", func(t *testing.T, w net.Conn, _ *net.TCPConn) error {
			w.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)) // the peer reads nothing
			_, err := io.Copy(w, struct{ io.Reader }{endlessReader{}})
			return err
		}, is(os.ErrDeadlineExceeded), true},
		{"write deadline while sending a file (sendfile)", func(t *testing.T, w net.Conn, peer *net.TCPConn) error {
			peer.SetReadBuffer(4096)
			w.(interface{ SetWriteBuffer(int) error }).SetWriteBuffer(4096)
			w.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)) // the peer reads nothing
			_, err := io.Copy(w, tempFile(t, 16<<20))
			return err
		}, is(os.ErrDeadlineExceeded), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newCaptureSink()
			spy := &Spy{Sink: sink}
			raw, peer := tcpPair(t)
			w := spy.WrapConn(raw, Client)
			defer w.Close()
			raw.SetReadDeadline(time.Now().Add(testTimeout))
			err := tc.copy(t, w, peer)
			if err == nil || tc.want != nil && !tc.want(err) {
				t.Fatalf("copy: %v (%T), not the error expected", err, err)
			}
			r := RecordOf(w)
			var failed []Event
			for _, e := range sink.all() {
				if e.Conn == r && (e.Message == MsgError || e.Message == MsgTimeout || e.Message == MsgEnd) {
					failed = append(failed, e)
				}
			}
			if !tc.socketFailed {
				for _, e := range failed {
					t.Errorf("%q (op %q, %v) for the connection: the other side's error was blamed on it", e.Message, e.Op, e.Err)
				}
				if r.Broken() {
					t.Errorf("record Broken: %+v", r.Snapshot())
				}
				w.Close()
				closes := sink.of(MsgClose, r)
				if len(closes) != 1 || closes[0].HadError || closes[0].ClosedBy != "local" {
					t.Errorf("Socket Close %+v, want hadError=false closedBy=local", closes)
				}
				return
			}
			if len(failed) != 1 || failed[0].Err != err && !errors.Is(err, failed[0].Err) {
				t.Errorf("events %+v for the connection, want one for the copy's error %v", failed, err)
			}
		})
	}
}

// closedTLSConn returns the client end of a TLS connection, handshake
// done, then closed.
func closedTLSConn(t *testing.T) *tls.Conn {
	t.Helper()
	cert, pool, err := selfsigned.New("localhost")
	if err != nil {
		t.Fatal(err)
	}
	a, b := tcpPair(t)
	t.Cleanup(func() { b.Close() })
	srv := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{cert}})
	done := make(chan error, 1)
	go func() { done <- srv.Handshake() }()
	client := tls.Client(a, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	client.Close()
	return client
}
