package httpscope_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// records keeps every Record a spy opens, for tests that look at a
// connection's state and requests in flight.
type records struct {
	mu sync.Mutex
	rs []*connscope.Record
}

func (r *records) spy(sink connscope.Sink) *connscope.Spy {
	return &connscope.Spy{Sink: sink, Hooks: connscope.Hooks{ConnOpened: func(rec *connscope.Record) {
		r.mu.Lock()
		r.rs = append(r.rs, rec)
		r.mu.Unlock()
	}}}
}

func (r *records) all() []*connscope.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*connscope.Record(nil), r.rs...)
}

// TestHTTP1ClosedConnectionHasNoRequestInFlight: an HTTP/1 client that
// closes a connection instead of pooling it says nothing of the request
// (no PutIdleConn); the request still ends when the connection closes.
func TestHTTP1ClosedConnectionHasNoRequestInFlight(t *testing.T) {
	ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			io.WriteString(w, strings.Repeat("x", 1<<20))
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "ok")
		default:
			io.WriteString(w, "ok")
		}
	}), nil)
	for _, tc := range []struct {
		name string
		path string
		read bool
		tr   func(*http.Transport)
	}{
		{"body closed unread", "/big", false, nil},
		{"Connection: close", "/close", true, nil},
		{"DisableKeepAlives", "/small", true, func(t *http.Transport) { t.DisableKeepAlives = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rs records
			spy := rs.spy(&memSink{})
			base := http.DefaultTransport.(*http.Transport).Clone()
			if tc.tr != nil {
				tc.tr(base)
			}
			defer base.CloseIdleConnections()
			client := &http.Client{Transport: httpscope.WrapTransport(spy, base, nil)}
			resp, err := client.Get(ts.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if tc.read {
				io.Copy(io.Discard, resp.Body)
			}
			resp.Body.Close()
			r := rs.all()[0]
			waitFor(t, "the client's close", func() bool { return !r.ClosedAt().IsZero() })
			if s, n := r.State(), r.InFlight(); s != connscope.StateClosed || n != 0 {
				t.Errorf("closed connection: state %v, %d in flight; want closed, 0", s, n)
			}
		})
	}
}
