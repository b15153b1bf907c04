package httpscope_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/connscope/connscope"
)

// TestHTTP2ServerShutdownMidRequest: http.Server.Shutdown sends GOAWAY to
// an HTTP/2 connection with a request in flight, lets it finish and closes
// the connection. The request succeeds, and the connection's record ends
// closed with nothing in flight and no event after its "Socket Close". (A
// "Socket Idle" may come just before the close: see README. Before the
// close's event waited for it, it came just after in 1 run in 20 under
// -race.)
func TestHTTP2ServerShutdownMidRequest(t *testing.T) {
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			io.WriteString(w, "part ")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		}
		io.WriteString(w, "ok")
	})}
	url, p := startTLSServer(t, nil, srv)
	sink := &memSink{}
	var rs records
	client := h2Client(t, &rs, sink, p, nil)
	if resp := get(t, client, url+"/first"); resp.ProtoMajor != 2 {
		t.Fatalf("first: %s, want HTTP/2", resp.Proto)
	}
	resp, err := client.Get(url + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(context.Background()) }()
	time.Sleep(20 * time.Millisecond) // the GOAWAY goes out
	close(release)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "part ok" {
		t.Fatalf("body %q, %v; want the whole response", body, err)
	}
	if err := <-shutdown; err != nil {
		t.Fatal(err)
	}
	r := rs.all()[0]
	waitFor(t, "the client's Socket Close", func() bool { return !r.ClosedAt().IsZero() })
	if s, n := r.State(), r.InFlight(); s != connscope.StateClosed || n != 0 {
		t.Errorf("state %v, %d in flight; want closed, 0", s, n)
	}
	got := messages(sink.events(connscope.Client))
	if i := slices.Index(got, connscope.MsgClose); i != len(got)-1 || count(sink, connscope.MsgIdle) > 2 {
		t.Errorf("events %q: want Socket Close last, and at most two Socket Idle", got)
	}
}
