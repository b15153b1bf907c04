package httpscope_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// TestRequestFailedAfterItsConnectionWentBack: a RoundTripper under the
// traced one (InstrumentDefault traces http.DefaultClient's, whatever it
// is) may fail a request after net/http took its whole response and put
// the connection back in the pool, as one that turns a 5xx into an error
// does. The connection is idle, and says so.
func TestRequestFailedAfterItsConnectionWentBack(t *testing.T) {
	ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/busy":
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "try later")
		case "/empty":
			w.WriteHeader(http.StatusServiceUnavailable) // no body: pooled before RoundTrip returns
		default:
			io.WriteString(w, "ok")
		}
	}), nil)
	for _, path := range []string{"/busy", "/empty"} {
		t.Run(path[1:], func(t *testing.T) {
			sink := &memSink{}
			var rs records
			spy := rs.spy(sink)
			base := &http.Transport{}
			defer base.CloseIdleConnections()
			httpscope.WrapTransport(spy, base, nil) // its connections; the requests are traced by InstrumentDefault
			old := http.DefaultClient.Transport
			defer func() { http.DefaultClient.Transport = old }()
			http.DefaultClient.Transport = roundTripFunc(func(req *http.Request) (*http.Response, error) {
				resp, err := base.RoundTrip(req)
				if err != nil || resp.StatusCode < 500 {
					return resp, err
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return nil, fmt.Errorf("status %d", resp.StatusCode)
			})
			undo := httpscope.InstrumentDefault(spy, nil)
			defer undo()

			if _, err := http.Get(ts.URL + path); err == nil {
				t.Fatal("want the RoundTripper's error")
			}
			r := rs.all()[0]
			want := []string{connscope.MsgConnect, connscope.MsgRequestError, connscope.MsgIdle}
			if s, n, got := r.State(), r.InFlight(), messages(sink.events(connscope.Client)); s != connscope.StateIdle || n != 0 || !slices.Equal(got, want) {
				t.Fatalf("after the failed request: state %v, %d in flight, events %q; want idle, 0, %q", s, n, got, want)
			}
			get(t, http.DefaultClient, ts.URL+"/after")
			if n := len(rs.all()); n != 1 {
				t.Errorf("%d connections, want the pooled one reused", n)
			}
		})
	}
}

// TestOneConnectionManyRequests: with MaxConnsPerHost 1, requests wait
// for the one connection, and net/http hands it to the next one as soon as
// a response is done. Its requests are numbered 1, 2, 3... in the order
// they took it, each answered once, and it ends idle. When the response
// has a body, request n+1 begins after request n's "HTTP(S) Response".
// (Without one, net/http hands the connection over before request n's
// RoundTrip returns: request n+1's events may come first. See README.)
func TestOneConnectionManyRequests(t *testing.T) {
	ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/204" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		io.WriteString(w, "ok")
	}), nil)
	for _, path := range []string{"/body", "/204"} {
		t.Run(path[1:], func(t *testing.T) {
			sink := &memSink{}
			var rs records
			base := &http.Transport{MaxConnsPerHost: 1}
			defer base.CloseIdleConnections()
			client := &http.Client{Transport: httpscope.WrapTransport(rs.spy(sink), base, nil)}
			const goroutines, requests = 8, 25
			var wg sync.WaitGroup
			for range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range requests {
						resp, err := client.Get(ts.URL + path)
						if err != nil {
							t.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
			}
			wg.Wait()
			if n := len(rs.all()); n != 1 {
				t.Fatalf("%d connections, want 1", n)
			}
			const n = goroutines * requests
			began := make([]int, n+2)    // event index of Socket Connect or Reuse Socket, by request
			answered := make([]int, n+2) // of HTTP(S) Response
			evs := sink.events(connscope.Client)
			for i, e := range evs {
				k := e.Request
				switch e.Msg {
				case connscope.MsgConnect:
					k = 1
					fallthrough
				case connscope.MsgReuse:
					if k < 1 || k > n || began[k-1] == 0 && k > 1 || began[k] != 0 {
						t.Fatalf("event %d: %s of request %d: requests must begin once each, in order", i, e.Msg, k)
					}
					began[k] = i + 1
				case connscope.MsgResponse:
					if k < 1 || k > n || began[k] == 0 || answered[k] != 0 {
						t.Fatalf("event %d: HTTP(S) Response of request %d, which has not begun or was answered", i, k)
					}
					answered[k] = i + 1
				}
			}
			for k := 1; k <= n; k++ {
				if answered[k] == 0 {
					t.Fatalf("request %d not answered", k)
				}
				if path == "/body" && k < n && began[k+1] < answered[k] {
					t.Fatalf("request %d began (event %d) before request %d's response (event %d)", k+1, began[k+1]-1, k, answered[k]-1)
				}
			}
			if r := rs.all()[0]; r.State() != connscope.StateIdle || r.InFlight() != 0 {
				t.Errorf("state %v, %d in flight; want idle, 0", r.State(), r.InFlight())
			}
		})
	}
}
