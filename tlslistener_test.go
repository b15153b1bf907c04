package connscope

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/connscope/connscope/internal/selfsigned"
)

// TestWrapListenerAboveTLS: a program that wraps a listener already
// speaking TLS (tls.NewListener) serves as without the spy: net/http sees
// a *tls.Conn, negotiates HTTP/2 and sets Request.TLS. Wrapped, the
// connection would not be one, and the server would answer TLS with
// HTTP/1 framing to an h2 client. The spy leaves such connections alone,
// counts them and says once how to wrap below TLS instead.
func TestWrapListenerAboveTLS(t *testing.T) {
	cert, pool, err := selfsigned.New("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	serve := func(t *testing.T, spy *Spy) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}})
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s tls=%v", r.Proto, r.TLS != nil)
		})}
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.Serve(spy.WrapListener(tln))
		}()
		t.Cleanup(func() {
			srv.Close()
			<-done
		})
		return "https://" + ln.Addr().String() + "/"
	}
	const requests = 3
	var answers [2]string
	sink := newCaptureSink()
	spy := &Spy{Sink: sink}
	for i, s := range []*Spy{nil, spy} {
		url := serve(t, s)
		for range requests {
			// A new client each time: a new connection.
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
			resp, err := (&http.Client{Transport: tr}).Get(url)
			if err != nil {
				t.Fatalf("spied=%v: %v", s != nil, err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			tr.CloseIdleConnections()
			if err != nil {
				t.Fatal(err)
			}
			answers[i] = string(b)
		}
	}
	if answers[0] != "HTTP/2.0 tls=true" || answers[1] != answers[0] {
		t.Errorf("handler saw %q bare, %q spied; want HTTP/2.0 over TLS both", answers[0], answers[1])
	}
	if n := spy.Stats().NotSpied; n != requests {
		t.Errorf("Stats().NotSpied = %d, want %d", n, requests)
	}
	evs := sink.of(MsgNotSpied, nil)
	if len(evs) != 1 || evs[0].Level.String() != "WARN" || evs[0].Err == nil || !strings.Contains(evs[0].Err.Error(), "under TLS") {
		t.Errorf("%d %q events %+v, want one warning that says to wrap under TLS", len(evs), MsgNotSpied, evs)
	}
	if n := len(sink.of(MsgAccept, nil)); n != 0 {
		t.Errorf("%d Socket Accept, want none: the connections are not spied", n)
	}
}
