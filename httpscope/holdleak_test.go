package httpscope_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// TestRoundTripperUnderTracedOneGivesUpOnAttempt: a RoundTripper under
// the traced one may give up waiting for an attempt and return, as a
// time-out wrapper that runs the attempt on a goroutine of its own does.
// The attempt goes on and gets its connection after RoundTrip has
// returned: nothing of the request is left to report, so the
// connection's own events must not wait for it. Its "Socket Close" comes
// once the connection closes, and Stats().Open drops to 0.
func TestRoundTripperUnderTracedOneGivesUpOnAttempt(t *testing.T) {
	ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), nil)
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	dial := make(chan struct{})
	base := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		select { // until the traced RoundTrip has returned
		case <-dial:
		case <-time.After(5 * time.Second):
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer base.CloseIdleConnections()
	httpscope.WrapTransport(spy, base, nil) // its connections; the requests are traced by InstrumentDefault
	attempt := make(chan error, 1)
	old := http.DefaultClient.Transport
	defer func() { http.DefaultClient.Transport = old }()
	http.DefaultClient.Transport = roundTripFunc(func(req *http.Request) (*http.Response, error) {
		go func() {
			resp, err := base.RoundTrip(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			attempt <- err
		}()
		select {
		case <-time.After(20 * time.Millisecond):
			return nil, errors.New("gave up")
		case err := <-attempt:
			return nil, err
		}
	})
	defer httpscope.InstrumentDefault(spy, nil)()

	if _, err := http.Get(ts.URL + "/"); err == nil {
		t.Fatal("want the RoundTripper's error")
	}
	close(dial)
	select {
	case err := <-attempt:
		if err != nil {
			t.Fatalf("the attempt: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the attempt never ended")
	}
	base.CloseIdleConnections()
	waitFor(t, "Stats().Open to drop to 0", func() bool { return spy.Stats().Open == 0 })
	if n := count(sink, connscope.MsgClose); n != 1 {
		t.Errorf("%d Socket Close, want 1: %q", n, messages(sink.events(connscope.Client)))
	}
}

// TestFailedRequestHeldBehindAnotherKeepsCloseLast: a request that took a
// connection behind one that has not returned (its answer had no body)
// has its events held, "Reuse Socket" first. When it then fails with its
// connection (here the server resets it), the connection's "Socket
// Error" and "Socket Close" must not go out before that held "Reuse
// Socket": a closed connection is reused by nothing. Once the first
// request returns, the second's events come, and the close after them.
func TestFailedRequestHeldBehindAnotherKeepsCloseLast(t *testing.T) {
	ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/first" {
			w.WriteHeader(http.StatusNoContent) // no body: pooled before RoundTrip returns
			return
		}
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}), nil)
	sink := &memSink{}
	var rs records
	spy := rs.spy(sink)
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	httpscope.WrapTransport(spy, base, nil)
	next := make(chan struct{})
	done := stallFirst(t, spy, base, ts.URL, next)
	req, err := http.NewRequest("POST", ts.URL+"/second", nil) // not retried
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("the second request did not fail")
	}
	close(next)
	<-done
	r := rs.all()[0]
	waitFor(t, "the second request's error", func() bool { return count(sink, connscope.MsgRequestError, 2) == 1 })
	var got []string
	for _, e := range sink.events(connscope.Client) {
		if e.ID == r.ID() {
			got = append(got, e.Msg)
		}
	}
	reuse := slices.Index(got, connscope.MsgReuse)
	closed := slices.Index(got, connscope.MsgClose)
	if reuse < 0 || closed < reuse {
		t.Errorf("events %q: want Socket Close after the second request's Reuse Socket", got)
	}
	if n := spy.Stats().Open; n != 0 {
		t.Errorf("Stats().Open = %d, want 0", n)
	}
	if n := httpscope.HeldConns(); n != 0 {
		t.Errorf("%d connections still hold events", n)
	}
}
