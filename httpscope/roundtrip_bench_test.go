package httpscope

import (
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"testing"

	"github.com/connscope/connscope"
)

// hookCaller stands in for net/http under the traced Transport: it calls
// the trace's hooks in the order net/http calls them for a keep-alive
// request on a pooled HTTP/1 connection, and answers at once. With it,
// BenchmarkRoundTripCost measures httpscope's own work per request, which
// the end-to-end BenchmarkHTTP cannot separate from net/http's, the
// kernel's and the garbage collector's.
type hookCaller struct {
	conn net.Conn // pooled: wrapped by the spy
	resp http.Response
}

func (h *hookCaller) RoundTrip(req *http.Request) (*http.Response, error) {
	tr := httptrace.ContextClientTrace(req.Context())
	if tr == nil {
		r := h.resp
		r.Request = req
		return &r, nil
	}
	tr.GotConn(httptrace.GotConnInfo{Conn: h.conn, Reused: true, WasIdle: true})
	tr.WroteRequest(httptrace.WroteRequestInfo{})
	tr.GotFirstResponseByte()
	r := h.resp
	r.Request = req
	// A bodiless response goes back to the pool before RoundTrip returns.
	tr.PutIdleConn(nil)
	return &r, nil
}

// BenchmarkRoundTripCost is httpscope's per-request cost, its hooks and
// events, without net/http: bare (no Transport), the trace without a sink
// (nosink), and with the three events of a keep-alive request encoded by
// the JSON sink (discard). Not to a file: this loop makes events faster
// than the page cache takes them here, and the sink would drop them;
// BenchmarkHTTP measures the file.
func BenchmarkRoundTripCost(b *testing.B) {
	client, server := tcpPairB(b)
	defer client.Close()
	defer server.Close()
	for _, mode := range []string{"bare", "nosink", "discard"} {
		b.Run("sink="+mode, func(b *testing.B) {
			var ws *connscope.WriterSink
			if mode == "discard" {
				ws = connscope.NewJSONSink(io.Discard, nil)
			}
			spy := &connscope.Spy{}
			if ws != nil {
				spy.Sink = ws
			}
			h := &hookCaller{conn: spy.WrapConn(client, connscope.Client),
				resp: http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Body: http.NoBody}}
			var rt http.RoundTripper = h
			if mode != "bare" {
				rt = &Transport{spy: spy, base: h}
			}
			req, err := http.NewRequest("GET", "http://127.0.0.1:8080/bench?page=1", nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if resp, err := rt.RoundTrip(req); err != nil || resp.StatusCode != 200 {
					b.Fatal(resp, err)
				}
			}
			b.StopTimer()
			if ws != nil {
				if err := ws.Close(); err != nil {
					b.Fatal(err)
				}
				if want := uint64(1 + 3*b.N); ws.Written() != want { // and the Socket Connect
					b.Fatalf("%d events written for %d requests, want %d", ws.Written(), b.N, want)
				}
			}
		})
	}
}

// tcpPairB is a connected pair of loopback TCP connections.
func tcpPairB(b *testing.B) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		b.Fatal(err)
	}
	return c, s
}
