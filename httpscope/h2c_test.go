package httpscope_test

import (
	"io"
	"net/http"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/connscope/connscope"
)

// TestServerH2CHandler: golang.org/x/net/http2/h2c's handler, as an
// instrumented server's Handler, takes unencrypted HTTP/2 connections
// over from the server and serves their requests itself, with the
// handler it wraps. They are seen all the same, each counted on its
// connection, which goes idle between them, as are the HTTP/1 requests it
// passes through.
func TestServerH2CHandler(t *testing.T) {
	sink := &memSink{}
	var rs records
	ts := startPlain(t, rs.spy(sink), h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), &http2.Server{}), nil)
	for _, tc := range []struct {
		name, proto string
		set         func(*http.Protocols)
	}{
		{"h2c", "HTTP/2.0", func(p *http.Protocols) { p.SetUnencryptedHTTP2(true) }},
		{"HTTP/1.1", "HTTP/1.1", func(p *http.Protocols) { p.SetHTTP1(true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{Protocols: new(http.Protocols)}
			tc.set(tr.Protocols)
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			const n = 3
			for range n {
				if resp := get(t, client, ts.URL+"/"+tc.name); resp.Proto != tc.proto {
					t.Fatalf("client got %s, want %s", resp.Proto, tc.proto)
				}
			}
			var evs []ev
			waitFor(t, "the server's events", func() bool {
				evs = nil
				for _, e := range sink.events(connscope.Server) {
					if e.Msg == connscope.MsgResponse && e.Target == "GET http://"+ts.Listener.Addr().String()+"/"+tc.name {
						evs = append(evs, e)
					}
				}
				return len(evs) == n
			})
			r := rs.all()[len(rs.all())-1]
			for i, e := range evs {
				if e.ID != r.ID() || e.Request != uint64(i+1) || e.Proto != tc.proto || e.Status != http.StatusOK {
					t.Errorf("server event %d: connection %v, request %d, %s, status %d; want %v, %d, %s, 200",
						i, e.ID, e.Request, e.Proto, e.Status, r.ID(), i+1, tc.proto)
				}
			}
			if got := r.Requests(); got != n {
				t.Errorf("the connection counts %d requests, want %d", got, n)
			}
			idles := func() (k int) {
				for _, e := range sink.events(connscope.Server) {
					if e.Msg == connscope.MsgIdle && e.ID == r.ID() {
						k++
					}
				}
				return k
			}
			waitFor(t, "the connection idle after each request", func() bool { return idles() == n && r.State() == connscope.StateIdle })
		})
	}
}
