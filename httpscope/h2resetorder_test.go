package httpscope_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// TestHTTP2ResetWithStreamsInFlightCauseBeforeEffect: the README promises
// that a failed request reports after its connection's own events ("Socket
// Error, Socket Close, then HTTP(S) Error, cause before effect"). Over
// HTTP/2 with several streams in flight when the peer resets the
// connection, each stream holds the connection's events until it
// returns, so the streams' "HTTP(S) Error"s go out before the "Socket
// Error" that caused them (all but the last one's).
func TestHTTP2ResetWithStreamsInFlightCauseBeforeEffect(t *testing.T) {
	const hanging = 5
	type connKey struct{}
	var inFlight atomic.Int32
	url, p := startTLSServer(t, nil, &http.Server{
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) },
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/hang":
				inFlight.Add(1)
				<-r.Context().Done()
			case "/reset":
				c := r.Context().Value(connKey{}).(*tls.Conn).NetConn().(*net.TCPConn)
				c.SetLinger(0)
				c.Close()
			default:
				io.WriteString(w, "ok")
			}
		}),
	})
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = p.cfg
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: httpscope.WrapTransport(spy, base, nil)}
	if resp := get(t, client, url+"/first"); resp.ProtoMajor != 2 {
		t.Fatalf("first: %s, want HTTP/2", resp.Proto)
	}

	var wg sync.WaitGroup
	for range hanging {
		wg.Go(func() {
			if resp, err := client.Get(url + "/hang"); err == nil {
				resp.Body.Close()
				t.Error("a request on a reset connection succeeded")
			}
		})
	}
	waitFor(t, "the hanging streams", func() bool { return inFlight.Load() == hanging })
	if resp, err := client.Get(url + "/reset"); err == nil {
		resp.Body.Close()
		t.Error("the request whose connection was reset succeeded")
	}
	wg.Wait()
	waitFor(t, "client Socket Close", func() bool { return slices.Contains(messages(sink.events(connscope.Client)), connscope.MsgClose) })

	evs := sink.events(connscope.Client)
	cause := slices.IndexFunc(evs, func(e ev) bool {
		return e.Msg == connscope.MsgError || e.Msg == connscope.MsgEnd || e.Msg == connscope.MsgClose
	})
	var early []uint64
	for _, e := range evs[:cause] {
		if e.Msg == connscope.MsgRequestError {
			early = append(early, e.Request)
		}
	}
	if len(early) > 0 {
		t.Errorf("HTTP(S) Error of requests %v before the connection's %q that caused them; events:\n%q",
			early, evs[cause].Msg, messages(evs))
	}
}
