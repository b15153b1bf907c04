package httpscope_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
	"github.com/connscope/connscope/internal/refused"
	"github.com/connscope/connscope/internal/selfsigned"
)

// retryOnce is a RoundTripper under httpscope.Transport that tries a
// request again once after a 503, as retrying clients do.
type retryOnce struct{ next http.RoundTripper }

func (r retryOnce) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		return resp, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return r.next.RoundTrip(req)
}

// TestRetryWithoutConnection: a request whose first attempt took a pooled
// connection and whose retry got none (its dial or its TLS handshake
// failed) has an "HTTP(S) Error" that names the failed dial, as one that
// never had a connection: no request number, no idleMs. It named the
// pooled connection, with that connection's idle time and request
// number, next to another dial's error.
func TestRetryWithoutConnection(t *testing.T) {
	cert, pool, err := selfsigned.New("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		tls  bool
		// second says what the server does with the second request: an
		// answer, or "" to close the connection unanswered, which
		// net/http retries (a GET on a reused connection).
		second  string
		wrap    func(http.RoundTripper) http.RoundTripper
		failMsg string // the event of the retry's failure
	}{
		{name: "dial refused", failMsg: connscope.MsgError},
		{name: "TLS handshake failed", tls: true, failMsg: connscope.MsgTLS},
		{name: "RoundTripper under the spy retries", second: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
			wrap: func(rt http.RoundTripper) http.RoundTripper { return retryOnce{rt} }, failMsg: connscope.MsgError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := acceptOne(t, func(c net.Conn) {
				if tt.tls {
					c = tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
				}
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, tt.second)
			})
			// The retry's dial: refused, or to a server that closes
			// the connection before the TLS handshake.
			retryAddr := refused.Addr(t)
			if tt.tls {
				retryAddr = acceptOne(t, func(net.Conn) {})
			}
			var dials atomic.Int32
			var d net.Dialer
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
				if dials.Add(1) > 1 {
					a = retryAddr
				}
				return d.DialContext(ctx, network, a)
			}}
			defer tr.CloseIdleConnections()
			sink := &memSink{}
			var rs records
			spy := rs.spy(sink)
			var client *http.Client
			if tt.wrap == nil {
				client = &http.Client{Transport: httpscope.WrapTransport(spy, tr, nil), Timeout: 10 * time.Second}
			} else {
				// The RoundTripper is under the traced one, which only
				// InstrumentDefault sets over a RoundTripper of the
				// program's (http.DefaultClient's).
				httpscope.WrapTransport(spy, tr, nil) // tr's connections
				old := http.DefaultClient.Transport
				defer func() { http.DefaultClient.Transport = old }()
				http.DefaultClient.Transport = tt.wrap(tr)
				undo := httpscope.InstrumentDefault(spy, nil)
				defer undo()
				client = http.DefaultClient
			}
			scheme := "http://"
			if tt.tls {
				scheme = "https://"
			}
			resp, err := client.Get(scheme + addr + "/first")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body) // to its end: the connection is pooled
			resp.Body.Close()
			if _, err := client.Get(scheme + addr + "/second"); err == nil {
				t.Fatal("the second request succeeded; want its retry to fail")
			}

			var pooledID, failID connscope.ID
			var reqErr *ev
			for _, e := range sink.events(0) {
				switch {
				case e.Msg == connscope.MsgReuse:
					pooledID = e.ID
				case e.Msg == tt.failMsg && e.Err != nil:
					failID = e.ID
				case e.Msg == connscope.MsgRequestError:
					reqErr = &e
				}
			}
			if pooledID.IsZero() || failID.IsZero() || reqErr == nil {
				t.Fatalf("want a Reuse Socket, a failed %s and an HTTP(S) Error: %q", tt.failMsg, messages(sink.events(0)))
			}
			if reqErr.ID != failID || reqErr.Request != 0 || reqErr.Idle != 0 {
				t.Errorf("HTTP(S) Error id %v, request %d, idle %v; want the failed retry's %v (the pooled connection is %v), no request, no idle",
					reqErr.ID, reqErr.Request, reqErr.Idle, failID, pooledID)
			}
			// The pooled connection's request is over all the same.
			for _, r := range rs.all() {
				if r.ID() == pooledID && r.InFlight() != 0 {
					t.Errorf("pooled connection %v with %d requests in flight, want 0", r.State(), r.InFlight())
				}
			}
			if n := httpscope.HeldConns(); n != 0 {
				t.Errorf("%d connections still hold events", n)
			}
		})
	}
}

// TestProxyRefusedConnectHasConnID: a request through a proxy that
// refuses its CONNECT gets no connection, but it dialed one, which
// net/http closes: its "HTTP(S) Error" names that connection, as it names
// a dial or a TLS handshake that failed. It had a null id, as if the
// request had dialed nothing.
func TestProxyRefusedConnectHasConnID(t *testing.T) {
	proxy := acceptOne(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
		io.Copy(io.Discard, c) // until the client closes
	})
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxy})}
	defer tr.CloseIdleConnections()
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	client := &http.Client{Transport: httpscope.WrapTransport(spy, tr, nil), Timeout: 10 * time.Second}
	if _, err := client.Get("https://service.invalid/x"); err == nil {
		t.Fatal("a request through a proxy that refused its CONNECT succeeded")
	}
	var connID connscope.ID
	var reqErr *ev
	for _, e := range sink.events(0) {
		switch e.Msg {
		case connscope.MsgConnect:
			connID = e.ID
		case connscope.MsgRequestError:
			reqErr = &e
		}
	}
	if connID.IsZero() || reqErr == nil {
		t.Fatalf("want a Socket Connect and an HTTP(S) Error: %q", messages(sink.events(0)))
	}
	if reqErr.ID != connID || reqErr.Request != 0 {
		t.Errorf("HTTP(S) Error id %v, request %d; want the proxy connection's %v, no request", reqErr.ID, reqErr.Request, connID)
	}
}

// TestEarlierAttemptsDialFailsLate: a dial that a request's first attempt
// started, then did without (a pooled connection came first), may fail
// while a retry waits for a connection of its own. That failure is not
// the retry's: the request's "HTTP(S) Error" (here its cancellation) did
// name that dial.
func TestEarlierAttemptsDialFailsLate(t *testing.T) {
	firstAsked := make(chan struct{})  // the second request is waiting
	firstServed := make(chan struct{}) // the first request has the connection
	addr := acceptOne(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		close(firstServed)
		select {
		case <-firstAsked:
		case <-time.After(10 * time.Second):
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		http.ReadRequest(br) // then close unanswered: net/http retries the GET
	})
	errDial := errors.New("dial failed late")
	var calls atomic.Int32
	early, retry := make(chan struct{}), make(chan struct{}) // the second and third dials fail when closed
	retryDialing := make(chan struct{})
	var d net.Dialer
	tr := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		switch calls.Add(1) {
		case 1:
			return d.DialContext(ctx, network, a)
		case 2: // the second request's first attempt
			close(firstAsked)
			<-early
			return nil, errDial
		case 3: // its retry
			close(retryDialing)
		}
		<-retry
		return nil, errDial
	}}
	defer tr.CloseIdleConnections()
	defer close(retry)
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	client := &http.Client{Transport: httpscope.WrapTransport(spy, tr, nil)}

	done := make(chan struct{})
	go func() { // takes the only connection, and pools it once the second request waits
		defer close(done)
		if resp, err := client.Get("http://" + addr + "/first"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	select {
	case <-firstServed:
	case <-time.After(10 * time.Second):
		t.Fatal("the first request never reached the server")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer cancel()
		fail := sync.OnceFunc(func() { close(early) }) // the first attempt's dial fails
		defer fail()
		select {
		case <-retryDialing:
		case <-time.After(10 * time.Second):
			return // the request below fails the test
		}
		fail()
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
			for _, e := range sink.events(0) {
				if e.Msg == connscope.MsgError && errors.Is(e.Err, errDial) {
					return
				}
			}
		}
	}()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/second", nil)
	if _, err := client.Do(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("second request: %v, want it canceled while its retry dialed", err)
	}
	<-done
	var failedDial connscope.ID
	var reqErr *ev
	for _, e := range sink.events(0) {
		switch {
		case e.Msg == connscope.MsgError && errors.Is(e.Err, errDial):
			failedDial = e.ID
		case e.Msg == connscope.MsgRequestError:
			reqErr = &e
		}
	}
	if reqErr == nil {
		t.Fatalf("no HTTP(S) Error: %q", messages(sink.events(0)))
	}
	if reqErr.ID == failedDial {
		t.Errorf("HTTP(S) Error of a request canceled while its retry dialed names %v, the dial its first attempt did without", failedDial)
	}
}
