package httpscope_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// A request can have two dials of its own at once: its first attempt
// dials X, takes a pooled connection Y that came free first (X goes on, for
// the pool), and when Y fails a retry dials Z. X's handshake still reports
// to the request's trace. These tests build that: request B holds Y in
// /hold; request A dials X to badTLS, then gets Y when B is released.

// badTLS accepts one connection, reads the ClientHello, and, when hangUp
// is closed, hangs up without an answer (the handshake fails with EOF);
// until then the handshake waits. With a nil hangUp it waits until the
// client gives up.
func badTLS(t *testing.T, hangUp <-chan struct{}) string {
	t.Helper()
	return acceptOne(t, func(c net.Conn) {
		c.Read(make([]byte, 4096))
		if hangUp == nil {
			io.Copy(io.Discard, c) // until the client gives up
			return
		}
		select {
		case <-hangUp:
		case <-time.After(5 * time.Second):
		}
	})
}

// handshakeFailed returns a context whose trace closes failed when a TLS
// handshake of the request fails. The caller's hooks run after the spy's:
// by then the spy has reported it.
func handshakeFailed(failed chan struct{}) context.Context {
	var once sync.Once
	return httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		TLSHandshakeDone: func(_ tls.ConnectionState, err error) {
			if err != nil {
				once.Do(func() { close(failed) })
			}
		},
	})
}

// slowFirstRead delays its first Read (the handshake's) until wait is
// closed.
type slowFirstRead struct {
	net.Conn
	once sync.Once
	wait <-chan struct{}
}

func (c *slowFirstRead) Read(p []byte) (int, error) {
	c.once.Do(func() {
		select {
		case <-c.wait:
		case <-time.After(5 * time.Second):
		}
	})
	return c.Conn.Read(p)
}

// TestFailedHandshakeOnItsConnection: X's failed handshake is reported on
// X, not on Z, the request's latest dial, which works and whose own
// handshake is reported as it is.
func TestFailedHandshakeOnItsConnection(t *testing.T) {
	holding, release := make(chan struct{}), make(chan struct{})
	var drops atomic.Int32
	url, p := startTLS(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hold":
			close(holding)
			<-release
		case "/drop":
			if drops.Add(1) == 1 { // close Y without an answer: the transport retries
				c, _, _ := w.(http.Hijacker).Hijack()
				c.Close()
				return
			}
		}
		io.WriteString(w, "ok")
	}))
	hangUp, xFailed := make(chan struct{}), make(chan struct{})
	z := func(c net.Conn) net.Conn { // Z, for A's retry: X fails while Z's handshake waits
		time.AfterFunc(50*time.Millisecond, func() { close(hangUp) }) // once the spy has Z
		return &slowFirstRead{Conn: c, wait: xFailed}
	}
	sink, _ := dialRace(t, url, p, holding, release, badTLS(t, hangUp), z, xFailed, "/drop")
	<-xFailed

	evs := sink.events(connscope.Client)
	var conns []connscope.ID // in dial order: Y, X, Z
	for _, e := range evs {
		if e.Msg == connscope.MsgConnect {
			conns = append(conns, e.ID)
		}
	}
	if len(conns) != 3 {
		t.Fatalf("%d connections, want 3 (Y, X, Z): %q", len(conns), messages(evs))
	}
	var xFail, zGood int
	for _, e := range evs {
		switch {
		case e.Msg != connscope.MsgTLS:
		case e.ID == conns[0] && e.Err == nil: // Y's, at B's request
		case e.ID == conns[1] && e.Err != nil:
			xFail++
			if e.TLSTime < xHeadStart {
				// Timed from Z's handshake, which began later.
				t.Errorf("X's failed handshake took %v; it ran for more than %v", e.TLSTime, xHeadStart)
			}
		case e.ID == conns[2] && e.Err == nil:
			zGood++
		default:
			t.Errorf("TLS Handshake on %v (Y, X, Z: %v) with error %v", e.ID, conns, e.Err)
		}
	}
	if xFail != 1 || zGood != 1 {
		t.Errorf("%d failed handshakes on X and %d good ones on Z, want 1 and 1", xFail, zGood)
	}
}

// TestCancelledDialIsNoFailedHandshake: when the program's
// CloseIdleConnections cancels a dial it no longer needs, in its
// handshake, no failed "TLS Handshake" is reported: nothing failed.
func TestCancelledDialIsNoFailedHandshake(t *testing.T) {
	holding, release := make(chan struct{}), make(chan struct{})
	url, p := startTLS(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			close(holding)
			<-release
		}
		io.WriteString(w, "ok")
	}))
	xFailed := make(chan struct{})
	sink, base := dialRace(t, url, p, holding, release, badTLS(t, nil), nil, xFailed, "/a")
	base.CloseIdleConnections() // cancels X's dial, in its handshake
	select {
	case <-xFailed:
	case <-time.After(5 * time.Second):
		t.Fatal("X's handshake was not cancelled")
	}
	for _, e := range sink.events(connscope.Client) {
		if e.Msg == connscope.MsgTLS && e.Err != nil {
			t.Errorf("the program's own CloseIdleConnections reported as a failed TLS handshake: %v", e.Err)
		}
	}
}

// xHeadStart is how long X's handshake runs before A's retry dials Z.
const xHeadStart = 100 * time.Millisecond

// dialRace plays the scene above on the server at url, whose /hold
// handler closes holding and waits for release: B takes Y (dial 1) in
// /hold; A, for path, dials X (dial 2) to bad, then gets Y when B is
// released. A third dial (a retry of A's) goes through third if it is not
// nil. A's context closes xFailed when one of its handshakes fails. It
// returns when A is done, with the client's events and its transport.
func dialRace(t *testing.T, url string, p *tlsPool, holding, release chan struct{}, bad string,
	third func(net.Conn) net.Conn, xFailed chan struct{}, path string) (*memSink, *http.Transport) {
	t.Helper()
	dialedX := make(chan struct{})
	var dials atomic.Int32
	base := &http.Transport{TLSClientConfig: p.cfg}
	t.Cleanup(base.CloseIdleConnections)
	base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		n := dials.Add(1)
		if n == 2 {
			defer close(dialedX)
			return d.DialContext(ctx, network, bad)
		}
		c, err := d.DialContext(ctx, network, addr)
		if err == nil && n == 3 && third != nil {
			c = third(c)
		}
		return c, err
	}
	sink := &memSink{}
	client := &http.Client{Transport: httpscope.WrapTransport(&connscope.Spy{Sink: sink}, base, nil)}
	bDone := make(chan struct{})
	go func() { defer close(bDone); get(t, client, url+"/hold") }() // B on Y
	<-holding
	req, err := http.NewRequestWithContext(handshakeFailed(xFailed), http.MethodGet, url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	aDone := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		aDone <- err
	}()
	<-dialedX
	// Y's and X's "Socket Connect", in that order, before Z's: the tests
	// tell the connections apart by it.
	waitFor(t, "X's Socket Connect", func() bool { return count(sink, connscope.MsgConnect) == 2 })
	time.Sleep(xHeadStart) // X's handshake runs at least this long
	close(release)
	<-bDone
	if err := <-aDone; err != nil {
		t.Fatalf("A: %v", err)
	}
	return sink, base
}
