package httpscope_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
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
