package httpscope_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// TestServerLateHandlerKeepsConnectionIdle: an HTTP/2 server starts each
// handler on its own goroutine, which may first run after the client has
// reset the stream and the server has reported the connection idle
// (ConnState). The request still counts, but the connection stays idle:
// on a server, ConnState owns the state. The test holds the instrumented
// handler back until the stream is gone, as a busy scheduler would.
func TestServerLateHandlerKeepsConnectionIdle(t *testing.T) {
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	entered := make(chan struct{}, 1)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	ts.Config.Protocols = new(http.Protocols)
	ts.Config.Protocols.SetUnencryptedHTTP2(true)
	var rec atomic.Pointer[connscope.Record]
	ts.Config.ConnState = func(c net.Conn, _ http.ConnState) { rec.Store(connscope.RecordOf(c)) }
	ts.Listener = spy.WrapListener(ts.Listener)
	httpscope.InstrumentServer(spy, ts.Config, nil)
	instrumented := ts.Config.Handler
	ts.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		// The server reports the connection idle before it cancels the
		// stream's context (http2serverConn.closeStream).
		<-r.Context().Done()
		instrumented.ServeHTTP(w, r)
	})
	ts.Start()
	defer ts.Close()

	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/late", nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() { <-entered; cancel() }() // the client resets the stream
	if _, err := tr.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want the cancelled request's error", err)
	}
	// Not "the last event": the server may report the connection idle
	// again after the handler's event.
	waitFor(t, "the late handler's HTTP(S) Response", func() bool {
		return slices.ContainsFunc(sink.events(connscope.Server), func(e ev) bool { return e.Msg == connscope.MsgResponse })
	})
	r := rec.Load()
	if r == nil {
		t.Fatal("the server's connection was not wrapped")
	}
	if s, n, reqs := r.State(), r.InFlight(), r.Requests(); s != connscope.StateIdle || n != 0 || reqs != 1 {
		t.Errorf("server connection after the late handler: state %v, %d in flight, %d requests; want idle, 0, 1", s, n, reqs)
	}
}
