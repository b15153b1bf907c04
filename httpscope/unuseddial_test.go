package httpscope_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// TestDialForAGoneRequestIsIdle: net/http finishes a dial whose request
// gave up and puts the connection in its pool, where it waits, unused,
// for the next request. It is idle there, not active: a monitor showing
// it active would point at a request that does not exist.
func TestDialForAGoneRequestIsIdle(t *testing.T) {
	ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), nil)
	sink := &memSink{}
	var rs records
	spy := rs.spy(sink)
	dialing, release := make(chan struct{}), make(chan struct{})
	base := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		close(dialing)
		select { // the dial outlives its request
		case <-release:
		case <-time.After(5 * time.Second):
		}
		return (&net.Dialer{}).DialContext(context.Background(), network, addr)
	}}
	// The spy has the connection idle once the dial returns; net/http
	// pools it a little later: the next request waits for it, and does
	// not dial (again through the DialContext above).
	oneConn(base)
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: httpscope.WrapTransport(spy, base, nil)}

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/gone", nil)
	done := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-dialing
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the cancelled request succeeded")
	}
	close(release)
	waitFor(t, "the dialed connection", func() bool { return len(rs.all()) == 1 })
	r := rs.all()[0]
	waitFor(t, "the unused connection idle", func() bool { return r.State() == connscope.StateIdle })
	if n := r.InFlight(); n != 0 {
		t.Errorf("%d requests in flight on the unused connection", n)
	}

	get(t, client, ts.URL+"/next") // takes it from the pool
	if len(rs.all()) != 1 {
		t.Fatalf("%d connections, want the pooled one used", len(rs.all()))
	}
	// net/http counts a connection taken from its pool as reused, used
	// before or not: its first request is a "Reuse Socket".
	want := []string{connscope.MsgConnect, connscope.MsgReuse, connscope.MsgResponse, connscope.MsgIdle}
	evs := sink.events(connscope.Client)
	if got := messages(evs); !slices.Equal(got, want) {
		t.Errorf("events %q, want %q", got, want)
	} else if evs[1].Request != 1 {
		t.Errorf("Reuse Socket of request %d, want 1", evs[1].Request)
	}
	if s, n := r.State(), r.InFlight(); s != connscope.StateIdle || n != 0 || r.Requests() != 1 {
		t.Errorf("after its first request: state %v, %d in flight, %d requests; want idle, 0, 1", s, n, r.Requests())
	}
}
