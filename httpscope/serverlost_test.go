package httpscope_test

import (
	"context"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/connscope/connscope"
)

// TestHTTP2ServerLostConnectionNotIdle: when an HTTP/2 client's connection
// is lost with a request in flight, the server closes the stream on its way
// out, and reports the connection idle (ConnState) before it closes it. That
// connection did not go idle between requests: no "Socket Idle", as on the
// client side (TestHTTP2LostConnectionNotIdle).
func TestHTTP2ServerLostConnectionNotIdle(t *testing.T) {
	entered := make(chan struct{}, 1)
	sink := &memSink{}
	var rs records
	url, p := startTLS(t, rs.spy(sink), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			entered <- struct{}{}
			select {
			case <-r.Context().Done(): // the connection is lost
			case <-time.After(5 * time.Second):
			}
		}
	}))
	var mu sync.Mutex
	var conns []net.Conn
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = p.cfg
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
		return c, err
	}
	tr.ForceAttemptHTTP2 = true // a DialContext turns it off
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	if resp := get(t, client, url+"/first"); resp.ProtoMajor != 2 {
		t.Fatalf("first: %s, want HTTP/2", resp.Proto)
	}
	r := rs.all()[0]
	waitFor(t, "the server's Socket Idle after the first request", func() bool {
		return countOf(messages(sink.events(connscope.Server)), connscope.MsgIdle) == 1 && r.State() == connscope.StateIdle
	})
	errc := make(chan error, 1)
	go func() {
		resp, err := client.Get(url + "/hang")
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler of /hang did not start")
	}
	mu.Lock()
	for _, c := range conns {
		c.Close() // the client's connection is lost
	}
	mu.Unlock()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("want an error from a lost connection")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not fail")
	}
	waitFor(t, "the server's Socket Close and the handler's HTTP(S) Response", func() bool {
		got := messages(sink.events(connscope.Server))
		return slices.Contains(got, connscope.MsgClose) && countOf(got, connscope.MsgResponse) == 2
	})
	got := messages(sink.events(connscope.Server))
	if n := countOf(got, connscope.MsgIdle); n != 1 {
		t.Errorf("server events %q: %d Socket Idle, want 1 (after the first request only)", got, n)
	}
	if s := r.State(); s != connscope.StateClosed {
		t.Errorf("server connection state %v, want closed", s)
	}
}
