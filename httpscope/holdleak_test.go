package httpscope_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
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
