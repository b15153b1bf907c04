package httpscope_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
	"github.com/connscope/connscope/internal/blackhole"
)

// TestRequestGivesUpDuringDialNamesTheDial: a request whose deadline
// passes while its dial waits for a peer that does not answer (a
// firewall dropping SYNs) names that dial in its "HTTP(S) Error": the
// dial's own event, which comes when the dial ends, has the same id.
func TestRequestGivesUpDuringDialNamesTheDial(t *testing.T) {
	addr := blackhole.Addr(t)
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	// The dial outlives the request (net/http lets it run, to pool what
	// it gets): its own deadline ends it.
	tr := &http.Transport{DialContext: (&net.Dialer{Timeout: 600 * time.Millisecond}).DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: httpscope.WrapTransport(spy, tr, nil)}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/firewalled", nil)
	if _, err := client.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the deadline's", err)
	}
	var reqErr ev
	waitFor(t, "the dial's own event", func() bool {
		for _, e := range sink.events(0) {
			if e.Msg == connscope.MsgRequestError {
				reqErr = e
			}
		}
		for _, e := range sink.events(0) {
			if e.Msg == connscope.MsgTimeout && e.Op == "dial" {
				if reqErr.Op != "dial" {
					t.Errorf("HTTP(S) Error op %q, want dial: the request gave up while connecting", reqErr.Op)
				}
				if reqErr.ID.IsZero() || e.ID != reqErr.ID {
					t.Fatalf("HTTP(S) Error id %v, want the dial's %v", reqErr.ID, e.ID)
				}
				return true
			}
		}
		return false
	})
}

// TestRequestOnUnseenConnNamesNoDial: a request whose dial still runs
// but that took, meanwhile, a connection the transport pooled before it
// was instrumented, and failed on it, names no dial: it did not wait for
// one (README: such a connection's requests are reported without id).
func TestRequestOnUnseenConnNamesNoDial(t *testing.T) {
	hang := blackhole.Addr(t)
	firstIn, xIn := make(chan struct{}), make(chan struct{})
	release, done := make(chan struct{}), make(chan struct{})
	defer close(done)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/first":
			close(firstIn)
			select {
			case <-release:
			case <-done:
			}
		case "/x":
			close(xIn)
			select {
			case <-r.Context().Done():
			case <-done:
			}
		}
	}))
	defer srv.Close()
	// Once instrumented, the transport's dials hang, as new connections
	// to a server whose accept queue is full do: the one it pooled before
	// is the only way through.
	var instrumented atomic.Bool
	dialing := make(chan struct{})
	var d net.Dialer
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if instrumented.Load() {
			close(dialing) // once: the test makes one such dial
			addr = hang
		}
		return d.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections() // ends the dial still hanging

	firstDone := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL + "/first")
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		firstDone <- err
	}()
	<-firstIn // its connection is busy: the next request dials

	instrumented.Store(true)
	sink := &memSink{}
	client := &http.Client{Transport: httpscope.WrapTransport(&connscope.Spy{Sink: sink}, tr, nil)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/x", nil)
	xDone := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		xDone <- err
	}()
	<-dialing
	close(release) // the first connection goes back to the pool, to the waiting request
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	<-xIn // on that connection, while its own dial still hangs
	cancel()
	if err := <-xDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want the cancellation", err)
	}
	tr.CloseIdleConnections() // cancels the dial nobody waits for: its event names it
	var dial, reqErr ev
	waitFor(t, "the dial's own event", func() bool {
		for _, e := range sink.events(0) {
			switch {
			case e.Op == "dial":
				dial = e
			case e.Msg == connscope.MsgRequestError:
				reqErr = e
			}
		}
		return dial.Msg != "" && reqErr.Msg != ""
	})
	if !reqErr.ID.IsZero() {
		t.Errorf("HTTP(S) Error of a request on a connection the spy does not see has id %v (the dial's: %v), want none", reqErr.ID, dial.ID)
	}
}
