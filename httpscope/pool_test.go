package httpscope_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sync"
	"testing"
	"time"

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
// they took it, each answered once, and it ends idle. Request n+1's
// events come after request n's, with or without a body (without one,
// net/http hands the connection over before request n's RoundTrip
// returns; see held).
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
			// Per request, on the one connection: its Socket Connect or
			// Reuse Socket, its HTTP(S) Response, then Socket Idle (it went
			// back to the pool), in the order the requests took it.
			const n = goroutines * requests
			evs := sink.events(connscope.Client)
			for i, e := range evs {
				k := uint64(i/3 + 1)
				want, wantReq := []string{connscope.MsgReuse, connscope.MsgResponse, connscope.MsgIdle}[i%3], []uint64{k, k, 0}[i%3]
				if i == 0 {
					want, wantReq = connscope.MsgConnect, 0
				}
				if e.Msg != want || e.Request != wantReq {
					t.Fatalf("event %d: %s of request %d; want %s of request %d (events around: %q)",
						i, e.Msg, e.Request, want, wantReq, messages(evs[max(0, i-4):min(len(evs), i+4)]))
				}
			}
			if len(evs) != 3*n {
				t.Fatalf("%d events, want %d", len(evs), 3*n)
			}
			if r := rs.all()[0]; r.State() != connscope.StateIdle || r.InFlight() != 0 {
				t.Errorf("state %v, %d in flight; want idle, 0", r.State(), r.InFlight())
			}
		})
	}
}

// TestNextRequestWaitsForTheLastOnesResponse: net/http pools a
// connection whose response has no body before RoundTrip returns it, and
// a waiting request takes it at once. That request's events still come
// after the first one's "HTTP(S) Response" and the "Socket Idle" between,
// as the connection lived them, even when the second request is over
// before the first returns. Each case stalls the first request at one
// point with a real connection, so that the order is not left to the
// scheduler.
func TestNextRequestWaitsForTheLastOnesResponse(t *testing.T) {
	ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}), nil)
	const stall = 5 * time.Second // bounds a stall if the second request never comes
	want := []string{connscope.MsgConnect, connscope.MsgResponse, connscope.MsgIdle,
		connscope.MsgReuse, connscope.MsgResponse, connscope.MsgIdle}
	for _, tc := range []struct {
		name string
		// The first request waits for the second's GotConn (its read loop
		// must go on for the second to be answered), or for its end.
		atGotConn bool
		// first stalls the first request until next is closed, and says
		// (by closing pooled) when its connection is back in the pool.
		run func(t *testing.T, spy *connscope.Spy, base *http.Transport, pooled, next chan struct{}) *http.Client
	}{
		{"caller's trace stalls the pool's read loop", true, func(t *testing.T, spy *connscope.Spy, base *http.Transport, pooled, next chan struct{}) *http.Client {
			client := &http.Client{Transport: httpscope.WrapTransport(spy, base, nil)}
			go func() {
				ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{PutIdleConn: func(error) {
					close(pooled)
					select { // until the second request has the connection
					case <-next:
					case <-time.After(stall):
					}
				}})
				req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/first", nil)
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
			return client
		}},
		{"a RoundTripper under the traced one returns late", false, func(t *testing.T, spy *connscope.Spy, base *http.Transport, pooled, next chan struct{}) *http.Client {
			old := http.DefaultClient.Transport
			t.Cleanup(func() { http.DefaultClient.Transport = old })
			http.DefaultClient.Transport = roundTripFunc(func(req *http.Request) (*http.Response, error) {
				resp, err := base.RoundTrip(req)
				if req.URL.Path == "/first" {
					close(pooled)
					select { // until the second request is over
					case <-next:
					case <-time.After(stall):
					}
				}
				return resp, err
			})
			undo := httpscope.InstrumentDefault(spy, nil)
			t.Cleanup(undo)
			go func() {
				if resp, err := http.Get(ts.URL + "/first"); err == nil {
					resp.Body.Close()
				}
			}()
			return http.DefaultClient
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			var rs records
			spy := rs.spy(sink)
			base := &http.Transport{}
			defer base.CloseIdleConnections()
			httpscope.WrapTransport(spy, base, nil) // its dialer, for the second case
			pooled, next := make(chan struct{}), make(chan struct{})
			client := tc.run(t, spy, base, pooled, next)
			select {
			case <-pooled:
			case <-time.After(stall):
				t.Fatal("the first request's connection never went back to the pool")
			}
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) {
				if tc.atGotConn {
					close(next)
				}
			}})
			req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/second", nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if !tc.atGotConn {
				close(next)
			}
			waitFor(t, "both requests over", func() bool { return count(sink, connscope.MsgIdle) == 2 })
			evs := sink.events(connscope.Client)
			if got := messages(evs); !slices.Equal(got, want) {
				t.Fatalf("events %q, want %q", got, want)
			}
			for i, e := range evs {
				wantReq := []uint64{0, 1, 0, 2, 2, 0}[i]
				if e.ID != evs[0].ID || e.Request != wantReq {
					t.Errorf("event %d (%s): connection %v request %d; want %v, %d", i, e.Msg, e.ID, e.Request, evs[0].ID, wantReq)
				}
			}
			if r := rs.all()[0]; r.State() != connscope.StateIdle || r.InFlight() != 0 || len(rs.all()) != 1 {
				t.Errorf("%d connections, state %v, %d in flight; want one, idle, 0", len(rs.all()), r.State(), r.InFlight())
			}
		})
	}
}
