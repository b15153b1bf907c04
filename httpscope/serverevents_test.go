package httpscope_test

import (
	"bufio"
	"bytes"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// serverResponse waits for the server's HTTP(S) Response of the request
// to path and returns it.
func serverResponse(t *testing.T, sink *memSink, path string) ev {
	t.Helper()
	var got ev
	waitFor(t, "the server's HTTP(S) Response of "+path, func() bool {
		for _, e := range sink.events(connscope.Server) {
			if e.Msg == connscope.MsgResponse && strings.HasSuffix(e.Target, path) {
				got = e
				return true
			}
		}
		return false
	})
	return got
}

// TestServer101Status: net/http treats 101 Switching Protocols as a final
// status (the other 1xx go out at once, ahead of it), whether or not the
// handler then hijacks the connection.
func TestServer101Status(t *testing.T) {
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	ts := startPlain(t, spy, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "demo")
		w.WriteHeader(http.StatusSwitchingProtocols)
		if r.URL.Path == "/hijack" {
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				c.Close()
			}
		}
	}), nil)
	for _, path := range []string{"/return", "/hijack"} {
		t.Run(path[1:], func(t *testing.T) {
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get(ts.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("client got %d, want 101", resp.StatusCode)
			}
			if e := serverResponse(t, sink, path); e.Status != http.StatusSwitchingProtocols {
				t.Errorf("server event status %d, the client received 101", e.Status)
			}
		})
	}
}

// TestServerPanicStatusOnlyIfSent: the HTTP(S) Response of a handler that
// panics carries the status only if the response header is known to have
// reached the connection; the client then has it, otherwise an error.
func TestServerPanicStatusOnlyIfSent(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 64<<10) // more than net/http buffers
	cases := []struct {
		path   string
		h1Only bool // the HTTP/2 writer has no ReadFrom; its bytes are not counted
		handle func(w http.ResponseWriter)
		want   int // also what the client receives; 0: an error
	}{
		{"/set", false, func(w http.ResponseWriter) {}, 0},
		{"/early-hints", false, func(w http.ResponseWriter) {
			// The 103 reaches the connection before the status is set.
			w.WriteHeader(http.StatusEarlyHints)
		}, 0},
		{"/flush", false, func(w http.ResponseWriter) { w.(http.Flusher).Flush() }, http.StatusCreated},
		{"/controller-flush", false, func(w http.ResponseWriter) {
			if err := http.NewResponseController(w).Flush(); err != nil {
				panic(err)
			}
		}, http.StatusCreated},
		{"/short-write", false, func(w http.ResponseWriter) { w.Write([]byte("buffered")) }, 0},
		{"/big-write", true, func(w http.ResponseWriter) { w.Write(big) }, http.StatusCreated},
		{"/short-readfrom", true, func(w http.ResponseWriter) {
			w.(io.ReaderFrom).ReadFrom(strings.NewReader("buffered"))
		}, 0},
		{"/big-readfrom", true, func(w http.ResponseWriter) {
			w.(io.ReaderFrom).ReadFrom(bytes.NewReader(big))
		}, http.StatusCreated},
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, c := range cases {
			if c.path != r.URL.Path {
				continue
			}
			if c.path == "/early-hints" {
				c.handle(w)
				w.WriteHeader(http.StatusCreated)
			} else {
				w.WriteHeader(http.StatusCreated)
				c.handle(w)
			}
		}
		panic(http.ErrAbortHandler) // not logged
	})
	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		t.Run(proto, func(t *testing.T) {
			sink := &memSink{}
			spy := &connscope.Spy{Sink: sink}
			var url string
			var tr *http.Transport
			if proto == "HTTP/2.0" {
				var p *tlsPool
				url, p = startTLS(t, spy, handler)
				tr = http.DefaultTransport.(*http.Transport).Clone()
				tr.TLSClientConfig = p.cfg
			} else {
				url = startPlain(t, spy, handler, nil).URL
				tr = &http.Transport{}
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			for _, c := range cases {
				if c.h1Only && proto != "HTTP/1.1" {
					continue
				}
				t.Run(c.path[1:], func(t *testing.T) {
					resp, err := client.Get(url + c.path)
					got := 0
					if err == nil {
						io.Copy(io.Discard, resp.Body) // fails: the response was aborted
						resp.Body.Close()
						got = resp.StatusCode
						if resp.Proto != proto {
							t.Fatalf("client used %s", resp.Proto)
						}
					}
					if got != c.want {
						t.Fatalf("client got status %d (error %v), want %d", got, err, c.want)
					}
					e := serverResponse(t, sink, c.path)
					if e.Status != c.want || e.Op != "handler" || e.Err == nil {
						t.Errorf("server event: status %d, op %q, error %v; want status %d, op handler and an error (the client received %d)",
							e.Status, e.Op, e.Err, c.want, got)
					}
				})
			}
		})
	}
}

// TestServerEventsOfRequests: a server connection reports Socket Idle only
// between requests: an HTTP/2 server also reports its connection active,
// then idle, as it reads the client's preface. The TLS Handshake comes
// first either way.
func TestServerEventsOfRequests(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	for _, tc := range []struct {
		name, proto string
		tls         bool
	}{
		{"HTTP/2 over TLS", "HTTP/2.0", true},
		{"HTTP/1 over TLS", "HTTP/1.1", true},
		{"HTTP/1", "HTTP/1.1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			spy := &connscope.Spy{Sink: sink}
			var url string
			var tr *http.Transport
			if tc.tls {
				var p *tlsPool
				url, p = startTLS(t, spy, handler)
				tr = http.DefaultTransport.(*http.Transport).Clone()
				tr.TLSClientConfig = p.cfg
				if tc.proto == "HTTP/1.1" {
					tr.Protocols = new(http.Protocols)
					tr.Protocols.SetHTTP1(true)
				}
			} else {
				url = startPlain(t, spy, handler, nil).URL
				tr = &http.Transport{}
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			want := []string{connscope.MsgAccept}
			if tc.tls {
				want = append(want, connscope.MsgTLS)
			}
			for i := range 2 {
				if resp := get(t, client, url+"/"); resp.Proto != tc.proto {
					t.Fatalf("client used %s, want %s", resp.Proto, tc.proto)
				}
				// The handler's event comes before the server marks the
				// connection idle; wait for the latter.
				waitFor(t, "the server's Socket Idle", func() bool {
					got := messages(sink.events(connscope.Server))
					return len(got) > 0 && got[len(got)-1] == connscope.MsgIdle &&
						countOf(got, connscope.MsgResponse) == i+1
				})
				want = append(want, connscope.MsgResponse, connscope.MsgIdle)
			}
			if got := messages(sink.events(connscope.Server)); !slices.Equal(got, want) {
				t.Errorf("server events:\n got %q\nwant %q", got, want)
			}
		})
	}
}

func countOf(msgs []string, msg string) int {
	n := 0
	for _, m := range msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// TestServerLogsHeadersTheClientSent: Options.LogHeaders on the server
// logs the request's headers as they arrived, not as a handler left them
// (middleware that sets a missing X-Request-Id, or strips a header).
func TestServerLogsHeadersTheClientSent(t *testing.T) {
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	opts := &httpscope.Options{LogHeaders: []string{"X-Request-Id", "X-Tenant"}}
	ts := startPlain(t, spy, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("X-Request-Id", "set-by-the-handler")
		r.Header.Del("X-Tenant")
		io.WriteString(w, "ok")
	}), opts)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, ts.URL+"/headers", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-Id", "req-42")
	req.Header.Set("X-Tenant", "acme")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	want := []connscope.Header{{Name: "X-Request-Id", Value: "req-42"}, {Name: "X-Tenant", Value: "acme"}}
	if got := serverResponse(t, sink, "/headers").Headers; !slices.Equal(got, want) {
		t.Errorf("server event headers %q, want what the client sent: %q", got, want)
	}
}

// TestServerOptionsStarNotIdleAgain: net/http answers "OPTIONS *" itself,
// without the Handler, and reports the connection active, then idle, as
// for any request. With no request seen since the last "Socket Idle",
// that is not another one; "OPTIONS *" has no "HTTP(S) Response" and is
// not counted, so the requests seen keep their numbers.
func TestServerOptionsStarNotIdleAgain(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	for _, tc := range []struct {
		name, proto string
		tls         bool
	}{
		{"HTTP/1", "HTTP/1.1", false},
		{"HTTP/2 over TLS", "HTTP/2.0", true},
		{"unencrypted HTTP/2", "HTTP/2.0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			spy := &connscope.Spy{Sink: sink}
			var idles atomic.Int32 // the server's ConnState(StateIdle)
			var rec atomic.Pointer[connscope.Record]
			srv := &http.Server{Handler: handler, ConnState: func(c net.Conn, s http.ConnState) {
				rec.CompareAndSwap(nil, connscope.RecordOf(c))
				if s == http.StateIdle {
					idles.Add(1)
				}
			}}
			var url string
			var tr *http.Transport
			if tc.tls {
				var p *tlsPool
				url, p = startTLSServer(t, spy, srv)
				tr = http.DefaultTransport.(*http.Transport).Clone()
				tr.TLSClientConfig = p.cfg
			} else {
				ts := httptest.NewUnstartedServer(nil)
				ts.Config = srv
				tr = &http.Transport{}
				if tc.proto == "HTTP/2.0" {
					srv.Protocols = new(http.Protocols)
					srv.Protocols.SetHTTP1(true)
					srv.Protocols.SetUnencryptedHTTP2(true)
					tr.Protocols = new(http.Protocols)
					tr.Protocols.SetUnencryptedHTTP2(true)
					oneConn(tr)
				}
				ts.Listener = spy.WrapListener(ts.Listener)
				httpscope.InstrumentServer(spy, srv, nil)
				ts.Start()
				t.Cleanup(ts.Close)
				url = ts.URL
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			want := []string{connscope.MsgAccept}
			if tc.tls {
				want = append(want, connscope.MsgTLS)
			}
			for i, path := range []string{"/a", "/b"} {
				if resp := get(t, client, url+path); resp.Proto != tc.proto {
					t.Fatalf("client used %s, want %s", resp.Proto, tc.proto)
				}
				waitFor(t, "the server's Socket Idle after "+path, func() bool {
					got := messages(sink.events(connscope.Server))
					return len(got) > 0 && got[len(got)-1] == connscope.MsgIdle &&
						countOf(got, connscope.MsgResponse) == i+1
				})
				want = append(want, connscope.MsgResponse, connscope.MsgIdle)

				before := idles.Load()
				req, err := http.NewRequest(http.MethodOptions, url, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.URL.Opaque = "*" // the request target "*"
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.Proto != tc.proto {
					t.Fatalf("OPTIONS *: client got %d over %s, want net/http's 200 over %s", resp.StatusCode, resp.Proto, tc.proto)
				}
				waitFor(t, "the server's ConnState(StateIdle) after OPTIONS *", func() bool { return idles.Load() > before })
			}
			evs := sink.events(connscope.Server)
			if got := messages(evs); !slices.Equal(got, want) {
				t.Errorf("server events:\n got %q\nwant %q", got, want)
			}
			for i, e := range slices.DeleteFunc(evs, func(e ev) bool { return e.Msg != connscope.MsgResponse }) {
				if e.Request != uint64(i+1) || strings.HasPrefix(e.Target, http.MethodOptions) {
					t.Errorf("server HTTP(S) Response %d: request %d, target %q; want request %d, no OPTIONS", i, e.Request, e.Target, i+1)
				}
			}
			if r := rec.Load(); r == nil {
				t.Error("the server's connection was not wrapped")
			} else if n := r.Requests(); n != 2 {
				t.Errorf("the server's connection counts %d requests, want the 2 its handler saw", n)
			}
		})
	}
}

// TestServerHijackedStatusOnlyIfSent: a handler that hijacks the
// connection answers on it itself, unseen: its HTTP(S) Response has no
// status, unless one was set before the hijack (net/http sends it as it
// hijacks). A status set through the ResponseWriter after the hijack is
// never sent (net/http refuses it), and a hijack around the spy's writer
// (through Unwrap) is a hijack too.
func TestServerHijackedStatusOnlyIfSent(t *testing.T) {
	const own = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n" // the handler's own answer
	hijack := func(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
		return http.NewResponseController(w).Hijack()
	}
	cases := []struct {
		path         string
		before       func(w http.ResponseWriter)
		hijack       func(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error)
		after        func(w http.ResponseWriter)
		client, want int // the status the client reads; the event's
	}{
		{"/controller", nil, hijack, nil, http.StatusNoContent, 0},
		{"/hijacker", nil, func(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
			return w.(http.Hijacker).Hijack()
		}, nil, http.StatusNoContent, 0},
		{"/around-the-spy", nil, func(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
			return w.(interface{ Unwrap() http.ResponseWriter }).Unwrap().(http.Hijacker).Hijack()
		}, nil, http.StatusNoContent, 0},
		{"/write-after", nil, hijack, func(w http.ResponseWriter) { w.Write([]byte("refused")) }, http.StatusNoContent, 0},
		{"/header-after", nil, hijack, func(w http.ResponseWriter) { w.WriteHeader(http.StatusAccepted) }, http.StatusNoContent, 0},
		{"/write-after-around", nil, func(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
			return w.(interface{ Unwrap() http.ResponseWriter }).Unwrap().(http.Hijacker).Hijack()
		}, func(w http.ResponseWriter) { w.Write([]byte("refused")) }, http.StatusNoContent, 0},
		{"/write-before", func(w http.ResponseWriter) { w.Write([]byte("buffered")) }, hijack, nil, http.StatusOK, http.StatusOK},
		{"/header-before", func(w http.ResponseWriter) { w.WriteHeader(http.StatusSwitchingProtocols) }, hijack, nil,
			http.StatusSwitchingProtocols, http.StatusSwitchingProtocols},
	}
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, c := range cases {
			if c.path != r.URL.Path {
				continue
			}
			if c.before != nil {
				c.before(w)
			}
			conn, brw, err := c.hijack(w)
			if err != nil {
				t.Errorf("%s: %v", c.path, err)
				return
			}
			defer conn.Close()
			brw.WriteString(own)
			brw.Flush()
			if c.after != nil {
				c.after(w)
			}
		}
	}))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // "response.Write on hijacked connection"
	ts.Listener = spy.WrapListener(ts.Listener)
	httpscope.InstrumentServer(spy, ts.Config, nil)
	ts.Start()
	defer ts.Close()
	for _, c := range cases {
		t.Run(c.path[1:], func(t *testing.T) {
			conn, err := net.Dial("tcp", ts.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, "GET "+c.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.client {
				t.Fatalf("client read status %d, want %d", resp.StatusCode, c.client)
			}
			if e := serverResponse(t, sink, c.path); e.Status != c.want {
				t.Errorf("server event status %d, want %d (the client read %d)", e.Status, c.want, resp.StatusCode)
			}
		})
	}
}
