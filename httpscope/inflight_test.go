package httpscope_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// records keeps every Record a spy opens, for tests that look at a
// connection's state and requests in flight.
type records struct {
	mu sync.Mutex
	rs []*connscope.Record
}

func (r *records) spy(sink connscope.Sink) *connscope.Spy {
	return &connscope.Spy{Sink: sink, Hooks: connscope.Hooks{ConnOpened: func(rec *connscope.Record) {
		r.mu.Lock()
		r.rs = append(r.rs, rec)
		r.mu.Unlock()
	}}}
}

func (r *records) all() []*connscope.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*connscope.Record(nil), r.rs...)
}

// TestHTTP1ClosedConnectionHasNoRequestInFlight: an HTTP/1 client that
// closes a connection instead of pooling it says nothing of the request
// (no PutIdleConn); the request still ends when the connection closes.
func TestHTTP1ClosedConnectionHasNoRequestInFlight(t *testing.T) {
	ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			io.WriteString(w, strings.Repeat("x", 1<<20))
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "ok")
		default:
			io.WriteString(w, "ok")
		}
	}), nil)
	for _, tc := range []struct {
		name string
		path string
		read bool
		tr   func(*http.Transport)
	}{
		{"body closed unread", "/big", false, nil},
		{"Connection: close", "/close", true, nil},
		{"DisableKeepAlives", "/small", true, func(t *http.Transport) { t.DisableKeepAlives = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rs records
			spy := rs.spy(&memSink{})
			base := http.DefaultTransport.(*http.Transport).Clone()
			if tc.tr != nil {
				tc.tr(base)
			}
			defer base.CloseIdleConnections()
			client := &http.Client{Transport: httpscope.WrapTransport(spy, base, nil)}
			resp, err := client.Get(ts.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if tc.read {
				io.Copy(io.Discard, resp.Body)
			}
			resp.Body.Close()
			r := rs.all()[0]
			waitFor(t, "the client's close", func() bool { return !r.ClosedAt().IsZero() })
			if s, n := r.State(), r.InFlight(); s != connscope.StateClosed || n != 0 {
				t.Errorf("closed connection: state %v, %d in flight; want closed, 0", s, n)
			}
		})
	}
}

// h2Client is an instrumented HTTP/2 client of a TLS server from
// startTLS, whose connections rs records.
func h2Client(t *testing.T, rs *records, sink *memSink, p *tlsPool, set func(*http.Transport)) *http.Client {
	t.Helper()
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = p.cfg
	if set != nil {
		set(base)
	}
	t.Cleanup(base.CloseIdleConnections)
	return &http.Client{Transport: httpscope.WrapTransport(rs.spy(sink), base, nil)}
}

// TestHTTP2StreamErrorLeavesConnectionIdle: a stream that fails on its own
// (the server resets it, the transport's ResponseHeaderTimeout) is reset
// by HTTP/2, which keeps the connection pooled: idle, as after a cancelled
// request (TestHTTP2FailedStreamLeavesConnectionIdle).
func TestHTTP2StreamErrorLeavesConnectionIdle(t *testing.T) {
	url, p := startTLS(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/reset":
			panic(http.ErrAbortHandler) // RST_STREAM INTERNAL_ERROR
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "/upload":
			io.Copy(io.Discard, r.Body)
		default:
			io.WriteString(w, "ok")
		}
	}))
	for _, tc := range []struct {
		name, path string
		set        func(*http.Transport)
		body       io.Reader // POSTed if set
	}{
		{"server resets the stream", "/reset", nil, nil},
		{"response header timeout", "/slow", func(t *http.Transport) { t.ResponseHeaderTimeout = 50 * time.Millisecond }, nil},
		{"the request's body fails", "/upload", nil, &failingBody{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			var rs records
			client := h2Client(t, &rs, sink, p, tc.set)
			if resp := get(t, client, url+"/first"); resp.ProtoMajor != 2 {
				t.Fatalf("first: %s, want HTTP/2", resp.Proto)
			}
			req, err := http.NewRequest(http.MethodGet, url+tc.path, nil)
			if tc.body != nil {
				req, err = http.NewRequest(http.MethodPost, url+tc.path, tc.body)
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := client.Do(req); err == nil {
				t.Fatal("want the failed stream's error")
			}
			r := rs.all()[0]
			got := messages(sink.events(connscope.Client))
			if s, n := r.State(), r.InFlight(); s != connscope.StateIdle || n != 0 || got[len(got)-1] != connscope.MsgIdle {
				t.Fatalf("after the failed stream: state %v, %d in flight, events %q; want idle, 0, ending in Socket Idle", s, n, got)
			}
			get(t, client, url+"/after")
			if n := len(rs.all()); n != 1 {
				t.Errorf("%d connections, want the first one reused", n)
			}
		})
	}
}

// failingBody is a request body whose second Read fails.
type failingBody struct{ sent bool }

func (b *failingBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, "partial"), nil
	}
	return 0, errors.New("the caller's body failed")
}

// TestHTTP2EmptyBodyOfOpenStream: a Content-Length of 0 does not end an
// HTTP/2 request: its stream may still be open (the handler flushed its
// header and goes on). It ends at the body's end.
func TestHTTP2EmptyBodyOfOpenStream(t *testing.T) {
	release := make(chan struct{})
	url, p := startTLS(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "0")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
	}))
	var rs records
	client := h2Client(t, &rs, &memSink{}, p, nil)
	resp, err := client.Get(url + "/open")
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 || resp.ContentLength != 0 {
		t.Fatalf("%s, Content-Length %d; want HTTP/2, 0", resp.Proto, resp.ContentLength)
	}
	r := rs.all()[0]
	if s, n := r.State(), r.InFlight(); s != connscope.StateActive || n != 1 {
		t.Errorf("stream still open: state %v, %d in flight; want active, 1", s, n)
	}
	close(release)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if s, n := r.State(), r.InFlight(); s != connscope.StateIdle || n != 0 {
		t.Errorf("after the body: state %v, %d in flight; want idle, 0", s, n)
	}
}

// TestHTTP2BodilessResponseEndsAtOnce: a HEAD's or a 204's stream ends
// with its headers, and net/http's empty body for it need not be closed:
// the request ends when RoundTrip returns.
func TestHTTP2BodilessResponseEndsAtOnce(t *testing.T) {
	url, p := startTLS(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/204" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		io.WriteString(w, "ok")
	}))
	for _, tc := range []struct{ method, path string }{
		{http.MethodHead, "/"},
		{http.MethodGet, "/204"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			var rs records
			client := h2Client(t, &rs, &memSink{}, p, nil)
			req, err := http.NewRequest(tc.method, url+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req) // its body is never closed
			if err != nil {
				t.Fatal(err)
			}
			if resp.ProtoMajor != 2 {
				t.Fatalf("%s, want HTTP/2", resp.Proto)
			}
			r := rs.all()[0]
			if s, n := r.State(), r.InFlight(); s != connscope.StateIdle || n != 0 {
				t.Errorf("state %v, %d in flight; want idle, 0", s, n)
			}
		})
	}
}

// TestHTTP2LostConnectionMidBodyNotIdle: the connection is lost while the
// caller reads a body. The body's error is the connection's: no "Socket
// Idle" for a connection that is going away (slowCloseConn widens the
// window between the transport failing the stream and the close).
func TestHTTP2LostConnectionMidBodyNotIdle(t *testing.T) {
	sink := &memSink{}
	var rs records
	gotHeaders := make(chan struct{})
	type connKey struct{}
	url, p := startTLSServer(t, nil, &http.Server{
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) },
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/drop" {
				io.WriteString(w, "ok")
				return
			}
			w.Header().Set("Content-Length", "100000")
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			select {
			case <-gotHeaders:
			case <-time.After(5 * time.Second):
			}
			r.Context().Value(connKey{}).(net.Conn).Close()
		}),
	})
	client := h2Client(t, &rs, sink, p, dialSlowClose)
	if resp := get(t, client, url+"/first"); resp.ProtoMajor != 2 {
		t.Fatalf("first: %s, want HTTP/2", resp.Proto)
	}
	resp, err := client.Get(url + "/drop")
	close(gotHeaders)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("want the lost connection's error from the body")
	}
	resp.Body.Close()
	r := rs.all()[0]
	waitFor(t, "the client's Socket Close", func() bool { return !r.ClosedAt().IsZero() })
	got := messages(sink.events(connscope.Client))
	last := slices.Index(got, connscope.MsgReuse)
	if last < 0 || slices.Contains(got[last:], connscope.MsgIdle) {
		t.Errorf("events %q: want a Reuse Socket and no Socket Idle after it", got)
	}
}
