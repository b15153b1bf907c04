package httpscope_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// TestBodilessResponseOnUnwrappedTLSConn: a Transport with DialTLSContext
// dials its TLS connections itself, and they are not wrapped (no Record).
// An HTTP/1 response without a body puts such a connection back in the
// pool before RoundTrip returns: the request is traced all the same.
func TestBodilessResponseOnUnwrappedTLSConn(t *testing.T) {
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	url, p := startTLS(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	base := &http.Transport{DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		cfg := p.cfg.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		return (&tls.Dialer{Config: cfg}).DialContext(ctx, network, addr)
	}}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: httpscope.WrapTransport(spy, base, nil)}
	for range 2 {
		resp := get(t, client, url+"/")
		if resp.StatusCode != http.StatusNoContent || resp.ProtoMajor != 1 {
			t.Fatalf("got %d over %s, want 204 over HTTP/1.1", resp.StatusCode, resp.Proto)
		}
	}
	n := 0
	for _, e := range sink.events(0) {
		if e.Msg == connscope.MsgResponse {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d HTTP(S) Response events, want 2", n)
	}
}
