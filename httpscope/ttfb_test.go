package httpscope_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// TestH2TTFBOfBodilessRequest: an HTTP/2 GET is fully written with its
// HEADERS frame (END_STREAM), so its response always comes after it and
// every "HTTP(S) Response" should carry a ttfb. net/http's HTTP/2 client
// calls WroteRequest on the writing goroutine after the headers are out,
// which the read loop's GotFirstResponseByte can beat.
func TestH2TTFBOfBodilessRequest(t *testing.T) {
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	url, p := startTLS(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = p.cfg
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: httpscope.WrapTransport(spy, base, nil)}
	const n = 3000
	for range n {
		if resp := get(t, client, url+"/"); resp.ProtoMajor != 2 {
			t.Fatalf("%s, want HTTP/2", resp.Proto)
		}
	}
	missing := 0
	for _, e := range sink.events(connscope.Client) {
		if e.Msg == connscope.MsgResponse && e.TTFB <= 0 {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d HTTP/2 GET responses have no ttfb, though each request was written before its answer", missing, n)
	}
}
