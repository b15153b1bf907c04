package connscope

import (
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"
)

// nopConn is a net.Conn whose Read and Write cost (almost) nothing, so
// that wrapping it measures the wrapper alone.
type nopConn struct{}

func (nopConn) Read(b []byte) (int, error)         { return len(b), nil }
func (nopConn) Write(b []byte) (int, error)        { return len(b), nil }
func (nopConn) Close() error                       { return nil }
func (nopConn) LocalAddr() net.Addr                { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (nopConn) RemoteAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2} }
func (nopConn) SetDeadline(t time.Time) error      { return nil }
func (nopConn) SetReadDeadline(t time.Time) error  { return nil }
func (nopConn) SetWriteDeadline(t time.Time) error { return nil }

// benchVsBare times op on the bare conn, then (the measured part) on the
// wrapped one, with the same b.N in the same run, and reports the bare
// time, the time the wrapper adds and the ratio.
func benchVsBare(b *testing.B, bare, wrapped net.Conn, op func(net.Conn)) {
	b.ReportAllocs()
	for range min(b.N, 1000) { // warm both up: caches, socket buffers, the pump
		op(bare)
		op(wrapped)
	}
	start := time.Now()
	for range b.N {
		op(bare)
	}
	bareNs := float64(time.Since(start).Nanoseconds()) / float64(b.N)
	b.ResetTimer()
	for range b.N {
		op(wrapped)
	}
	b.StopTimer()
	wrappedNs := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(bareNs, "bare-ns/op")
	b.ReportMetric(wrappedNs-bareNs, "added-ns/op")
	b.ReportMetric(wrappedNs/bareNs, "x-bare")
}

func benchSpy(b *testing.B) *Spy {
	sink := NewJSONSink(io.Discard, nil)
	b.Cleanup(func() { sink.Close() })
	return &Spy{Sink: sink}
}

func readOp(size int) func(net.Conn) {
	buf := make([]byte, size)
	return func(c net.Conn) {
		if _, err := io.ReadFull(c, buf); err != nil {
			panic(err)
		}
	}
}

func writeOp(size int) func(net.Conn) {
	buf := make([]byte, size)
	return func(c net.Conn) {
		if _, err := c.Write(buf); err != nil {
			panic(err)
		}
	}
}

// BenchmarkConnRead: Read through the wrapper vs bare. "nop" isolates the
// wrapper's own cost; "tcp" reads from a loopback socket whose peer keeps
// it full (a syscall per read).
func BenchmarkConnRead(b *testing.B) {
	for _, size := range []int{1, 64} {
		b.Run("nop/"+itoa(int64(size)), func(b *testing.B) {
			benchVsBare(b, nopConn{}, benchSpy(b).WrapConn(nopConn{}, Client), readOp(size))
		})
	}
	// With Spy.ActivityTimes: one clock read more per call.
	b.Run("nop-activity/64", func(b *testing.B) {
		spy := benchSpy(b)
		spy.ActivityTimes = true
		benchVsBare(b, nopConn{}, spy.WrapConn(nopConn{}, Client), readOp(64))
	})
	for _, size := range []int{1, 64} {
		b.Run("tcp/"+itoa(int64(size)), func(b *testing.B) {
			c, s := tcpPair(b)
			stop := make(chan struct{})
			pumped := make(chan struct{})
			go func() { // keep the socket full
				defer close(pumped)
				buf := make([]byte, 64<<10)
				for {
					select {
					case <-stop:
						return
					default:
					}
					s.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
					if _, err := s.Write(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
						return
					}
				}
			}()
			b.Cleanup(func() { close(stop); <-pumped })
			benchVsBare(b, c, benchSpy(b).WrapConn(c, Client), readOp(size))
		})
	}
}

// BenchmarkConnWrite: Write through the wrapper vs bare, as above; the
// tcp peer drains the socket.
func BenchmarkConnWrite(b *testing.B) {
	for _, size := range []int{1, 64} {
		b.Run("nop/"+itoa(int64(size)), func(b *testing.B) {
			benchVsBare(b, nopConn{}, benchSpy(b).WrapConn(nopConn{}, Client), writeOp(size))
		})
	}
	for _, size := range []int{1, 64} {
		b.Run("tcp/"+itoa(int64(size)), func(b *testing.B) {
			c, s := tcpPair(b)
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				io.Copy(io.Discard, s)
			}()
			b.Cleanup(func() { c.Close(); <-drained })
			benchVsBare(b, c, benchSpy(b).WrapConn(c, Client), writeOp(size))
		})
	}
}

// benchEvents are typical events: a close with its counters, and an error.
func benchEvents() map[string]*Event {
	r := &Record{id: NewID(), side: Client, network: "tcp",
		local: endpoint{addr: "10.0.0.12", port: 53412}, remote: endpoint{addr: "93.184.216.34", port: 443}}
	r.bytesRead.Store(123456)
	return map[string]*Event{
		"close": {Time: time.Now(), Message: MsgClose, Producer: DefaultProducer, Conn: r,
			Target: "GET https://example.com:443/v1/items?page=2", HadError: false, ClosedBy: "remote",
			Duration: 1234567 * time.Microsecond, BytesRead: 123456, BytesWritten: 789},
		"response": {Time: time.Now(), Message: MsgResponse, Producer: DefaultProducer, Conn: r,
			Target: "GET https://example.com:443/v1/items?page=2", Request: 3, Status: 200, Protocol: "HTTP/1.1",
			TTFB: 15300 * time.Microsecond, Duration: 16 * time.Millisecond, BytesRead: 123456, BytesWritten: 789},
		"error": {Time: time.Now(), Message: MsgError, Producer: DefaultProducer, Conn: r,
			Op: "read", Err: errBenchReset},
	}
}

// errBenchReset is a connection reset as a socket reports it (an errno
// inside), but with an Error() that does not allocate: a *net.OpError's
// does, which is the caller's cost, not the encoder's.
var errBenchReset error = benchOpError{"read tcp 10.0.0.12:53412->93.184.216.34:443: read: connection reset by peer", syscall.ECONNRESET}

type benchOpError struct {
	msg string
	err error
}

func (e benchOpError) Error() string { return e.msg }
func (e benchOpError) Unwrap() error { return e.err }

func BenchmarkEventJSON(b *testing.B) { benchEncode(b, (*Event).AppendJSON) }
func BenchmarkEventText(b *testing.B) { benchEncode(b, (*Event).AppendText) }

func benchEncode(b *testing.B, encode func(*Event, []byte) []byte) {
	for _, name := range []string{"close", "response", "error"} {
		e := benchEvents()[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 1024)
			for b.Loop() {
				buf = encode(e, buf[:0])
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

// BenchmarkWriterSinkEmit: the cost of Emit on a JSON sink (encode into
// the shared buffer under its lock), its goroutine writing to io.Discard.
func BenchmarkWriterSinkEmit(b *testing.B) {
	s := NewJSONSink(io.Discard, nil)
	defer s.Close()
	e := benchEvents()["close"]
	b.ReportAllocs()
	for b.Loop() {
		s.Emit(e)
	}
}

// BenchmarkRedactionTarget: the target of a request without secrets, as
// httpscope builds it for every request.
func BenchmarkRedactionTarget(b *testing.B) {
	u, err := url.Parse("https://api.example.com/v1/items?page=2&sort=name")
	if err != nil {
		b.Fatal(err)
	}
	var rd Redaction
	b.ReportAllocs()
	for b.Loop() {
		rd.Target("GET", u)
	}
}
