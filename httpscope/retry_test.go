package httpscope_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// refusingH2C is an HTTP/2 (h2c, prior knowledge) server on 127.0.0.1
// that refuses its first stream with RST_STREAM(REFUSED_STREAM), which
// Go's client retries on the same connection, and answers every other
// stream with an empty 200.
func refusingH2C(t *testing.T) string {
	t.Helper()
	return "http://" + acceptOne(t, func(c net.Conn) {
		if _, err := io.ReadFull(c, make([]byte, len(http2.ClientPreface))); err != nil {
			return
		}
		fr := http2.NewFramer(c, c)
		fr.WriteSettings()
		var hdr bytes.Buffer
		hpack.NewEncoder(&hdr).WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		refused := false
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					fr.WriteSettingsAck()
				}
			case *http2.HeadersFrame:
				if !refused {
					refused = true
					fr.WriteRSTStream(f.StreamID, http2.ErrCodeRefusedStream)
					continue
				}
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hdr.Bytes(), EndHeaders: true, EndStream: true})
			}
		}
	}) + "/"
}

// acceptOne listens on 127.0.0.1 and hands the first connection to serve,
// under a 10 s deadline whatever the client does; it returns the address.
// The test's cleanup closes the listener and waits for serve to return.
func acceptOne(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		serve(c)
	}()
	return ln.Addr().String()
}

// TestHTTP2RefusedStreamRetry: a request the HTTP/2 client retries on the
// same connection is one request there: no second "Reuse Socket", and the
// connection goes back idle once both requests are done.
func TestHTTP2RefusedStreamRetry(t *testing.T) {
	url := refusingH2C(t)
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	oneConn(tr)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: httpscope.WrapTransport(spy, tr, nil)}
	for range 2 {
		resp := get(t, client, url)
		if resp.ProtoMajor != 2 {
			t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
		}
	}
	evs := sink.events(connscope.Client)
	want := []string{connscope.MsgConnect, connscope.MsgResponse, connscope.MsgIdle, connscope.MsgReuse, connscope.MsgResponse, connscope.MsgIdle}
	if got := messages(evs); !slices.Equal(got, want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
	if evs[1].Request != 1 || evs[4].Request != 2 {
		t.Errorf("request numbers %d, %d; want 1, 2 (the retry is not a request of its own)", evs[1].Request, evs[4].Request)
	}
	if st := spy.Stats(); st.Opened != 1 {
		t.Errorf("%d connections, want 1", st.Opened)
	}
}

// TestTLSHandshakeOfPooledDial: an HTTP/1 TLS connection dialed for a
// request that gave up goes into the pool; the request that takes it
// finds it Reused, and its "TLS Handshake" must still be reported.
func TestTLSHandshakeOfPooledDial(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ts.Close()
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	tr := ts.Client().Transport.(*http.Transport).Clone()
	dialed := make(chan struct{})
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		<-dialed // the request gives up first
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: httpscope.WrapTransport(spy, tr, nil)}

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/first", nil)
	time.AfterFunc(20*time.Millisecond, cancel)
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("the first request succeeded; want it canceled")
	}
	close(dialed)
	waitFor(t, "the abandoned dial's handshake", func() bool {
		return slices.Contains(messages(sink.events(connscope.Client)), connscope.MsgConnect)
	})
	time.Sleep(50 * time.Millisecond) // the handshake ends and the connection joins the pool
	get(t, client, ts.URL+"/second")
	got := messages(sink.events(connscope.Client))
	if !slices.Contains(got, connscope.MsgTLS) {
		t.Errorf("no TLS Handshake for the pooled connection: %q", got)
	}
}

// TestRequestWithoutURL: the traced transport returns the base
// transport's error for a request without a URL, as without the spy.
func TestRequestWithoutURL(t *testing.T) {
	rt := httpscope.WrapTransport(&connscope.Spy{Sink: &memSink{}}, &http.Transport{}, nil)
	_, err := rt.RoundTrip(&http.Request{Method: "GET", Header: http.Header{}})
	_, bare := (&http.Transport{}).RoundTrip(&http.Request{Method: "GET", Header: http.Header{}})
	if err == nil || bare == nil || err.Error() != bare.Error() {
		t.Errorf("error %v, bare %v", err, bare)
	}
}

// TestNewTransportReplacedDefault: a program that replaced
// http.DefaultTransport with its own RoundTripper still gets a traced
// transport with the standard defaults, not a panic.
func TestNewTransportReplacedDefault(t *testing.T) {
	old := http.DefaultTransport
	http.DefaultTransport = roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, io.EOF })
	defer func() { http.DefaultTransport = old }()
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	rt := httpscope.NewTransport(spy, nil)
	ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), nil)
	get(t, &http.Client{Transport: rt}, ts.URL)
	rt.CloseIdleConnections()
	if got := messages(sink.events(connscope.Client)); len(got) < 2 || got[0] != connscope.MsgConnect {
		t.Errorf("events %q", got)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
