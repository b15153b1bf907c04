package httpscope_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// TestBodilessResponseOnUnwrappedTLSConn: a Transport with DialTLSContext
// dials its TLS connections itself, and they are not wrapped (no Record).
// An HTTP/1 response without a body puts such a connection back in the
// pool before RoundTrip returns: the request is traced all the same.
func TestBodilessResponseOnUnwrappedTLSConn(t *testing.T) {
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	url, p := startTLS(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	base := &http.Transport{DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		cfg := p.cfg.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		return (&tls.Dialer{Config: cfg}).DialContext(ctx, network, addr)
	}}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: httpscope.WrapTransport(spy, base, nil)}
	for range 2 {
		resp := get(t, client, url+"/")
		if resp.StatusCode != http.StatusNoContent || resp.ProtoMajor != 1 {
			t.Fatalf("got %d over %s, want 204 over HTTP/1.1", resp.StatusCode, resp.Proto)
		}
	}
	n := 0
	for _, e := range sink.events(0) {
		if e.Msg == connscope.MsgResponse {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d HTTP(S) Response events, want 2", n)
	}
}

// TestRetryUnderTracedOneOnAnotherConnection: a RoundTripper under the
// traced one (InstrumentDefault traces http.DefaultClient's, whatever it
// is) may try a request again elsewhere, as one that fails over to
// another server on a 503 does. The first answer had no body: its
// connection went back to the pool before RoundTrip returned, and a
// waiting request took it, behind the first one. That request's events
// still come out, once the first request has left the connection.
func TestRetryUnderTracedOneOnAnotherConnection(t *testing.T) {
	ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/first" {
			w.WriteHeader(http.StatusServiceUnavailable) // no body: pooled before RoundTrip returns
			return
		}
		io.WriteString(w, "ok")
	}), nil)
	other := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}), nil)
	sink := &memSink{}
	var rs records
	spy := rs.spy(sink)
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	httpscope.WrapTransport(spy, base, nil) // its connections; the requests are traced by InstrumentDefault
	const stall = 5 * time.Second
	pooled, next := make(chan struct{}), make(chan struct{})
	old := http.DefaultClient.Transport
	defer func() { http.DefaultClient.Transport = old }()
	http.DefaultClient.Transport = roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
			return resp, err
		}
		resp.Body.Close()
		close(pooled)
		select { // until the second request is over
		case <-next:
		case <-time.After(stall):
		}
		again := req.Clone(req.Context())
		again.URL.Host = other.Listener.Addr().String()
		again.Host = ""
		return base.RoundTrip(again)
	})
	undo := httpscope.InstrumentDefault(spy, nil)
	defer undo()

	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.Get(ts.URL + "/first"); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case <-pooled:
	case <-time.After(stall):
		t.Fatal("the first request's connection never went back to the pool")
	}
	get(t, http.DefaultClient, ts.URL+"/second") // takes the pooled connection
	close(next)
	<-done
	first := rs.all()[0]
	waitFor(t, "the second request's events", func() bool {
		for _, e := range sink.events(connscope.Client) {
			if e.ID == first.ID() && e.Msg == connscope.MsgResponse && e.Request == 2 {
				return true
			}
		}
		return false
	})
	var got []string
	for _, e := range sink.events(connscope.Client) {
		if e.ID == first.ID() {
			got = append(got, e.Msg)
		}
	}
	want := []string{connscope.MsgConnect, connscope.MsgIdle, connscope.MsgReuse, connscope.MsgResponse, connscope.MsgIdle}
	if !slices.Equal(got, want) {
		t.Errorf("first connection's events %q, want %q", got, want)
	}
	if s, n := first.State(), first.InFlight(); s != connscope.StateIdle || n != 0 {
		t.Errorf("first connection %v with %d in flight, want idle with 0", s, n)
	}
	if n := httpscope.HeldConns(); n != 0 {
		t.Errorf("%d connections still hold events", n)
	}
}

// TestRetryUnderTracedOneOnTheSameConnection: a RoundTripper under the
// traced one that tries a request again after an answer without a body
// (a 503) gets the same connection back from the pool: net/http pooled it
// before handing over that answer. The second attempt is the
// connection's next request: the connection is active while its body is
// read, and idle once, after it.
func TestRetryUnderTracedOneOnTheSameConnection(t *testing.T) {
	var mu sync.Mutex
	hits := 0
	ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		first := hits == 1
		mu.Unlock()
		if first {
			w.WriteHeader(http.StatusServiceUnavailable) // no body: pooled before RoundTrip returns
			return
		}
		io.WriteString(w, "ok")
	}), nil)
	sink := &memSink{}
	var rs records
	spy := rs.spy(sink)
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	httpscope.WrapTransport(spy, base, nil)
	old := http.DefaultClient.Transport
	defer func() { http.DefaultClient.Transport = old }()
	http.DefaultClient.Transport = roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
			return resp, err
		}
		resp.Body.Close()
		return base.RoundTrip(req) // the pooled connection again
	})
	undo := httpscope.InstrumentDefault(spy, nil)
	defer undo()

	resp, err := http.Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rs.all()); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
	r := rs.all()[0]
	if s := r.State(); s != connscope.StateActive {
		t.Errorf("with the body unread: connection %v, want active", s)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	waitFor(t, "the connection idle", func() bool { return r.State() == connscope.StateIdle })
	evs := sink.events(connscope.Client)
	want := []string{connscope.MsgConnect, connscope.MsgIdle, connscope.MsgReuse, connscope.MsgResponse, connscope.MsgIdle}
	if got := messages(evs); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	for i, e := range evs {
		if wantReq := []uint64{0, 0, 2, 2, 0}[i]; e.Request != wantReq {
			t.Errorf("event %d (%s): request %d, want %d", i, e.Msg, e.Request, wantReq)
		}
	}
	if n := r.InFlight(); n != 0 {
		t.Errorf("%d in flight, want 0", n)
	}
}

// TestH2CUnderAnotherRoundTripper: a RoundTripper under the traced one
// (InstrumentDefault traces http.DefaultClient's, whatever it is) may
// send over unencrypted HTTP/2, which the traced one cannot tell from
// HTTP/1 by the connection. A request that runs beside another on such a
// connection is still reported, while the other one is in flight and
// after it ends.
func TestH2CUnderAnotherRoundTripper(t *testing.T) {
	sink := &memSink{}
	var rs records
	url, release, slow := slowH2CUnderMiddleware(t, rs.spy(sink))
	if resp := get(t, http.DefaultClient, url+"/fast"); resp.ProtoMajor != 2 {
		t.Fatalf("fast: %s, want HTTP/2", resp.Proto)
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	// Both went over the slow one's connection, side by side. Not "one
	// connection": net/http may dial another for /fast (see
	// slowH2CUnderMiddleware), which it closes unused.
	if used := usedConns(&rs); len(used) != 1 || used[0].Requests() != 2 {
		t.Fatalf("requests on %d connections (of %d dialed), want both on one", len(used), len(rs.all()))
	}
	waitFor(t, "both responses", func() bool { return count(sink, connscope.MsgResponse) == 2 })
	// and after: a later request is not held either
	get(t, http.DefaultClient, url+"/after")
	waitFor(t, "the next response", func() bool { return count(sink, connscope.MsgResponse) == 3 })
	if n := httpscope.HeldConns(); n != 0 {
		t.Errorf("%d connections still hold events", n)
	}
}

// TestHeldIdleAfterClose: a request that took a connection behind one
// that has not returned (its answer had no body) has its events held,
// and the connection may close in the meantime (here the pool closes it
// once idle). Its "Socket Close" is not held, but no "Socket Idle" comes
// after it: the connection is not idle.
func TestHeldIdleAfterClose(t *testing.T) {
	ts := startFirstNoBody(t)
	sink := &memSink{}
	var rs records
	spy := rs.spy(sink)
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	httpscope.WrapTransport(spy, base, nil)
	next := make(chan struct{})
	done := stallFirst(t, spy, base, ts.URL, next) // until the connection has closed
	get(t, http.DefaultClient, ts.URL+"/second")   // takes the pooled connection, behind the first
	base.CloseIdleConnections()
	r := rs.all()[0]
	waitFor(t, "the connection closed", func() bool { return r.State() == connscope.StateClosed })
	close(next)
	<-done
	waitFor(t, "the second request's response", func() bool { return count(sink, connscope.MsgResponse, 2) == 1 })
	evs := sink.events(connscope.Client)
	closed := slices.IndexFunc(evs, func(e ev) bool { return e.Msg == connscope.MsgClose })
	if closed < 0 {
		t.Fatalf("no Socket Close in %q", messages(evs))
	}
	for _, e := range evs[closed:] {
		if e.Msg == connscope.MsgIdle {
			t.Fatalf("Socket Idle after Socket Close: %q", messages(evs))
		}
	}
	if n := httpscope.HeldConns(); n != 0 {
		t.Errorf("%d connections still hold events", n)
	}
}

// TestEventHookMakesTracedRequest: a program's Event hook (or sink) may
// itself make a request through a traced client, as one that posts an
// alert does, also while events are held behind a request that has not
// returned (see TestNextRequestWaitsForTheLastOnesResponse) and when they
// are let go.
func TestEventHookMakesTracedRequest(t *testing.T) {
	ts := startFirstNoBody(t)
	alerts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "noted")
	}), nil)
	sink := &memSink{}
	var armed, fired atomic.Bool
	alerted := make(chan error, 1)
	spy := &connscope.Spy{Sink: sink, Hooks: connscope.Hooks{Event: func(e *connscope.Event) {
		if !armed.Load() || e.Message != connscope.MsgIdle || !fired.CompareAndSwap(false, true) {
			return
		}
		resp, err := http.Get(alerts.URL + "/alert")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		alerted <- err
	}}}
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	httpscope.WrapTransport(spy, base, nil)
	const stall = 5 * time.Second
	next := make(chan struct{})
	done := stallFirst(t, spy, base, ts.URL, next) // until the second request is over
	get(t, http.DefaultClient, ts.URL+"/second")   // takes the pooled connection, behind the first
	armed.Store(true)
	close(next)
	select {
	case <-done:
	case <-time.After(stall):
		t.Fatal("the first request never returned: the hook's request deadlocked")
	}
	if err := <-alerted; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second request's response", func() bool { return count(sink, connscope.MsgResponse, 2) == 1 })
}

// TestRoundTripperUnderTracedOnePanics: a RoundTripper under the traced
// one may panic once net/http has answered, and the program recover (as
// http.Server does for a handler that made the request). An answer
// without a body had put the connection back in the pool already: the
// requests that take it next are still reported.
func TestRoundTripperUnderTracedOnePanics(t *testing.T) {
	ts := startFirstNoBody(t)
	sink := &memSink{}
	var rs records
	spy := rs.spy(sink)
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	httpscope.WrapTransport(spy, base, nil)
	old := http.DefaultClient.Transport
	defer func() { http.DefaultClient.Transport = old }()
	http.DefaultClient.Transport = roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(req)
		if req.URL.Path == "/first" {
			panic("middleware bug")
		}
		return resp, err
	})
	undo := httpscope.InstrumentDefault(spy, nil)
	defer undo()
	func() {
		defer func() {
			if v := recover(); v == nil {
				t.Fatal("want the RoundTripper's panic")
			}
		}()
		http.Get(ts.URL + "/first")
	}()
	get(t, http.DefaultClient, ts.URL+"/second") // takes the pooled connection
	waitFor(t, "the second request's response", func() bool { return count(sink, connscope.MsgResponse, 2) == 1 })
	r := rs.all()[0]
	if s, n := r.State(), r.InFlight(); s != connscope.StateIdle || n != 0 {
		t.Errorf("connection %v with %d in flight, want idle with 0", s, n)
	}
	if n := httpscope.HeldConns(); n != 0 {
		t.Errorf("%d connections still hold events", n)
	}
}

// TestH2CStreamsUnderAnotherRoundTripperNotHeld: as in
// TestH2CUnderAnotherRoundTripper, requests side by side on an
// unencrypted HTTP/2 connection under a RoundTripper that is not an
// *http.Transport. Each is reported as it happens, while a long one is
// in flight: HTTP/2 streams do not wait for each other, and one that
// ended before the next began is no gate for it.
func TestH2CStreamsUnderAnotherRoundTripperNotHeld(t *testing.T) {
	sink := &memSink{}
	url, release, slow := slowH2CUnderMiddleware(t, &connscope.Spy{Sink: sink})
	defer func() {
		close(release)
		if err := <-slow; err != nil {
			t.Error(err)
		}
		if n := httpscope.HeldConns(); n != 0 {
			t.Errorf("%d connections still hold events", n)
		}
	}()
	for i := range 2 {
		if resp := get(t, http.DefaultClient, url+"/fast"); resp.ProtoMajor != 2 {
			t.Fatalf("fast: %s, want HTTP/2", resp.Proto)
		}
		waitFor(t, fmt.Sprintf("fast request %d's response, the slow one in flight", i+1), func() bool {
			for _, e := range sink.events(connscope.Client) {
				if e.Msg == connscope.MsgResponse && e.Request == uint64(i+2) {
					return true
				}
			}
			return false
		})
	}
}

// slowH2CUnderMiddleware starts an unencrypted HTTP/2 server and puts a
// RoundTripper that is not an *http.Transport (over one wrapped by spy,
// h2c only) under InstrumentDefault's traced http.DefaultClient. It
// starts a request to /slow, which has its connection when this returns
// and is answered once release is closed; slow gets its error.
//
// A request made next goes over that connection too, but may dial one of
// its own first: net/http hands a new h2c connection to the request it
// was dialed for before it puts it in its pool (Transport.dialConnFor),
// and a request that looks in the pool in between dials. HTTP/2 then
// closes the new connection unused (addConnIfNeeded: "two goroutines
// made requests to the same host at the same time"), without the spy too.
func slowH2CUnderMiddleware(t *testing.T, spy *connscope.Spy) (url string, release chan struct{}, slow chan error) {
	release = make(chan struct{})
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		}
		io.WriteString(w, "ok")
	}))
	ts.Config.Protocols = new(http.Protocols)
	ts.Config.Protocols.SetUnencryptedHTTP2(true)
	ts.Start()
	t.Cleanup(ts.Close)
	base := &http.Transport{Protocols: new(http.Protocols)}
	base.Protocols.SetUnencryptedHTTP2(true) // and not HTTP1: h2c for http:// URLs
	t.Cleanup(base.CloseIdleConnections)
	httpscope.WrapTransport(spy, base, nil)
	old := http.DefaultClient.Transport
	t.Cleanup(func() { http.DefaultClient.Transport = old })
	http.DefaultClient.Transport = roundTripFunc(base.RoundTrip)
	t.Cleanup(httpscope.InstrumentDefault(spy, nil))

	slow = make(chan error, 1)
	got := make(chan struct{})
	go func() {
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { close(got) }})
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/slow", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		slow <- err
	}()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow request got no connection")
	}
	return ts.URL, release, slow
}

// stallFirst puts under InstrumentDefault's traced http.DefaultClient a
// RoundTripper over base that holds the answer to /first, whose
// connection net/http has pooled by then, until next is closed (at most
// 5 s). It starts GET url/first and returns once that connection is in
// the pool; done is closed when the request has returned.
func stallFirst(t *testing.T, spy *connscope.Spy, base *http.Transport, url string, next <-chan struct{}) (done chan struct{}) {
	pooled := make(chan struct{})
	old := http.DefaultClient.Transport
	t.Cleanup(func() { http.DefaultClient.Transport = old })
	http.DefaultClient.Transport = roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(req)
		if req.URL.Path == "/first" {
			close(pooled)
			select {
			case <-next:
			case <-time.After(5 * time.Second):
			}
		}
		return resp, err
	})
	t.Cleanup(httpscope.InstrumentDefault(spy, nil))
	done = make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.Get(url + "/first"); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case <-pooled:
	case <-time.After(5 * time.Second):
		t.Fatal("the first request's connection never went back to the pool")
	}
	return done
}

// startFirstNoBody starts a server that answers /first with a 204 (no
// body: net/http pools the connection before RoundTrip returns) and
// anything else with "ok".
func startFirstNoBody(t *testing.T) *httptest.Server {
	return startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/first" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		io.WriteString(w, "ok")
	}), nil)
}

// usedConns returns the connections that carried requests: not those
// that net/http dialed and closed unused.
func usedConns(rs *records) []*connscope.Record {
	return slices.DeleteFunc(rs.all(), func(r *connscope.Record) bool { return r.Requests() == 0 })
}

// count returns how many of the client's events have message msg (and,
// if given, belong to request req).
func count(sink *memSink, msg string, req ...uint64) int {
	n := 0
	for _, e := range sink.events(connscope.Client) {
		if e.Msg == msg && (len(req) == 0 || e.Request == req[0]) {
			n++
		}
	}
	return n
}

// TestConnectionClosedAfterBodilessAnswer: an answer without a body that
// says "Connection: close" makes net/http close the connection before
// RoundTrip hands the answer over. The connection's own events wait for
// the request's: "HTTP(S) Response", then "Socket Close" (before this was
// fixed, 189 of 200 such requests logged the close first). A failure
// keeps the opposite order: the connection's "Socket Error" and "Socket
// Close" say why the request failed, and come before its "HTTP(S)
// Error".
func TestConnectionClosedAfterBodilessAnswer(t *testing.T) {
	const requests = 50
	for _, tc := range []struct {
		name   string
		method string
		status int
		reset  bool // the server resets the connection instead of answering
		want   []string
	}{
		{"204", http.MethodGet, http.StatusNoContent, false,
			[]string{connscope.MsgConnect, connscope.MsgResponse, connscope.MsgClose}},
		{"304", http.MethodGet, http.StatusNotModified, false,
			[]string{connscope.MsgConnect, connscope.MsgResponse, connscope.MsgClose}},
		{"HEAD", http.MethodHead, http.StatusOK, false,
			[]string{connscope.MsgConnect, connscope.MsgResponse, connscope.MsgClose}},
		{"reset", http.MethodGet, 0, true,
			[]string{connscope.MsgConnect, connscope.MsgError, connscope.MsgClose, connscope.MsgRequestError}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.reset {
					c, _, err := http.NewResponseController(w).Hijack()
					if err != nil {
						t.Error(err)
						return
					}
					c.(*net.TCPConn).SetLinger(0)
					c.Close()
					return
				}
				w.Header().Set("Connection", "close")
				w.WriteHeader(tc.status)
			}), nil)
			sink := &memSink{}
			spy := &connscope.Spy{Sink: sink}
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: httpscope.WrapTransport(spy, tr, nil)}
			for range requests {
				req, err := http.NewRequest(tc.method, ts.URL, nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := c.Do(req)
				if tc.reset {
					if err == nil {
						resp.Body.Close()
						t.Fatal("request to a server that resets succeeded")
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
				}
			}
			waitFor(t, "every connection's Socket Close", func() bool { return count(sink, connscope.MsgClose) == requests })
			byConn := map[connscope.ID][]string{}
			for _, e := range sink.events(connscope.Client) {
				byConn[e.ID] = append(byConn[e.ID], e.Msg)
			}
			if len(byConn) != requests {
				t.Fatalf("%d connections for %d requests, each answered with a close", len(byConn), requests)
			}
			bad := 0
			for id, msgs := range byConn {
				// The server's FIN may be read first: "Socket End" is the
				// connection's own, and comes after the response too.
				msgs = slices.DeleteFunc(msgs, func(m string) bool { return m == connscope.MsgEnd && !tc.reset })
				if !slices.Equal(msgs, tc.want) {
					if bad++; bad <= 3 {
						t.Errorf("connection %v: %v, want %v", id, msgs, tc.want)
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d connections out of order", bad, requests)
			}
		})
	}
}
