package httpscope_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"golang.org/x/net/http2/hpack"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
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
			oneConn(tr)
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

// TestServerH2CUpgradeNotIdleMidRequest: a client that upgrades an HTTP/1
// connection to h2c (Upgrade: h2c, as curl --http2 does) has its upgrade
// request served as stream 1 before it sends its preface, at which the
// HTTP/2 server reports the connection idle (ConnState). Stream 1 is
// still open then, whether its handler still runs or has returned (its
// response waits for the preface): no "Socket Idle" then, one when
// stream 1 ends.
func TestServerH2CUpgradeNotIdleMidRequest(t *testing.T) {
	for _, block := range []bool{true, false} {
		t.Run(fmt.Sprintf("handler-runs=%v", block), func(t *testing.T) {
			sink := &memSink{}
			var rs records
			spy := rs.spy(sink)
			entered, release := make(chan struct{}, 1), make(chan struct{})
			var once sync.Once
			unblock := func() { once.Do(func() { close(release) }) }
			defer unblock()
			idle := make(chan struct{}, 8)
			ts := httptest.NewUnstartedServer(h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				entered <- struct{}{}
				if block {
					select {
					case <-release:
					case <-time.After(5 * time.Second):
					}
				}
				io.WriteString(w, "ok")
			}), &http2.Server{}))
			ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateIdle {
					idle <- struct{}{}
				}
			}
			ts.Listener = spy.WrapListener(ts.Listener)
			httpscope.InstrumentServer(spy, ts.Config, nil)
			ts.Start()
			defer ts.Close()

			c, br := upgradeH2C(t, ts.Listener.Addr().String(), http.MethodGet, "")
			wait := func(ch chan struct{}, what string) {
				t.Helper()
				select {
				case <-ch:
				case <-time.After(5 * time.Second):
					t.Fatalf("timed out waiting for %s", what)
				}
			}
			wait(entered, "the upgrade request's handler")
			if !block {
				serverResponse(t, sink, "/up") // the handler returned before the preface
			}
			r := rs.all()[0]
			io.WriteString(c, http2.ClientPreface)
			fr := http2.NewFramer(c, br)
			if err := fr.WriteSettings(); err != nil {
				t.Fatal(err)
			}
			wait(idle, "the server's ConnState(StateIdle) at the preface")
			if block {
				if got := countOf(messages(sink.events(connscope.Server)), connscope.MsgIdle); got != 0 || r.State() != connscope.StateActive {
					t.Errorf("with stream 1 in flight: %d Socket Idle, state %v; want 0, active", got, r.State())
				}
				unblock()
			}
			for i := 0; ; i++ { // the response's frames, to stream 1's end
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatal(err)
				}
				if f.Header().StreamID == 1 && f.Header().Flags.Has(http2.FlagDataEndStream) {
					break
				}
				if i == 20 {
					t.Fatal("no end of stream 1 in 20 frames")
				}
			}
			wait(idle, "the server's ConnState(StateIdle) as stream 1 ends")
			got := messages(sink.events(connscope.Server))
			if want := []string{connscope.MsgAccept, connscope.MsgHijack, connscope.MsgResponse, connscope.MsgIdle}; !slices.Equal(got, want) {
				t.Errorf("server events:\n got %q\nwant %q", got, want)
			}
			if s, n := r.State(), r.InFlight(); s != connscope.StateIdle || n != 0 {
				t.Errorf("after stream 1: state %v, %d in flight; want idle, 0", s, n)
			}
		})
	}
}

// TestServerH2CUpgradeIsHTTP2: the request that upgrades a connection to
// h2c (Upgrade: h2c, as curl --http2 sends) reaches the handler as it
// came, HTTP/1.1, but h2c's HTTP/2 server answers it as stream 1 after
// the 101: the client reads the status from an HTTP/2 HEADERS frame, and
// the HTTP(S) Response says HTTP/2.0, with that status.
func TestServerH2CUpgradeIsHTTP2(t *testing.T) {
	for _, tc := range []struct{ method, body string }{
		{http.MethodGet, ""},
		{http.MethodPost, "a body h2c reads before the 101"},
	} {
		t.Run(tc.method, func(t *testing.T) {
			sink := &memSink{}
			spy := &connscope.Spy{Sink: sink}
			seen := make(chan string, 1)
			ts := startPlain(t, spy, h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen <- r.Proto
				w.WriteHeader(http.StatusAccepted)
				io.WriteString(w, "ok")
			}), &http2.Server{}), nil)
			c, br := upgradeH2C(t, ts.Listener.Addr().String(), tc.method, tc.body)
			io.WriteString(c, http2.ClientPreface)
			fr := http2.NewFramer(c, br)
			fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
			if err := fr.WriteSettings(); err != nil {
				t.Fatal(err)
			}
			status := ""
			for i := 0; status == ""; i++ {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatal(err)
				}
				if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == 1 {
					status = h.PseudoValue("status")
				}
				if i == 20 {
					t.Fatal("no response headers on stream 1 in 20 frames")
				}
			}
			if status != "202" {
				t.Fatalf("client read :status %s on stream 1, want 202", status)
			}
			select {
			case proto := <-seen:
				if proto != "HTTP/1.1" {
					t.Errorf("the handler saw %s; h2c hands the upgrade's request over as it came, HTTP/1.1", proto)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the handler did not run")
			}
			if e := serverResponse(t, sink, "/up"); e.Proto != "HTTP/2.0" || e.Status != http.StatusAccepted {
				t.Errorf("server event: %s, status %d; want HTTP/2.0, 202: what the client read", e.Proto, e.Status)
			}
		})
	}
}

// TestServerH2CFailedUpgradeNotIdleAgain: an upgrade to h2c that h2c's
// handler refuses (an HTTP2-Settings header it cannot decode: a 500 of
// its own, the handler never runs) leaves the connection HTTP/1, kept
// alive. That request is not counted, and no "Socket Idle" follows it:
// the connection went back idle after the request before.
func TestServerH2CFailedUpgradeNotIdleAgain(t *testing.T) {
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	var idles atomic.Int32 // the server's ConnState(StateIdle)
	ts := httptest.NewUnstartedServer(h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), &http2.Server{}))
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateIdle {
			idles.Add(1)
		}
	}
	ts.Listener = spy.WrapListener(ts.Listener)
	httpscope.InstrumentServer(spy, ts.Config, nil)
	ts.Start()
	t.Cleanup(ts.Close)

	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	send := func(req string, want int) {
		t.Helper()
		before := idles.Load()
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("got %d, want %d", resp.StatusCode, want)
		}
		waitFor(t, "the server's ConnState(StateIdle)", func() bool { return idles.Load() > before })
	}
	send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusOK)
	send("GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: !!!\r\n\r\n",
		http.StatusInternalServerError) // h2c's own answer
	send("GET /b HTTP/1.1\r\nHost: x\r\n\r\n", http.StatusOK)

	want := []string{connscope.MsgAccept, connscope.MsgResponse, connscope.MsgIdle, connscope.MsgResponse, connscope.MsgIdle}
	waitFor(t, "the server's events", func() bool { return len(sink.events(connscope.Server)) >= len(want) })
	if got := messages(sink.events(connscope.Server)); !slices.Equal(got, want) {
		t.Errorf("server events %v, want %v", got, want)
	}
}

// upgradeH2C dials addr and upgrades the connection to h2c with a
// request to /up, as curl --http2 does; it returns the connection (closed
// at the test's end) and its reader, past the 101.
func upgradeH2C(t *testing.T, addr, method, body string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// HTTP2-Settings: one setting, ENABLE_PUSH 0.
	fmt.Fprintf(c, "%s /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAIAAAAA\r\nContent-Length: %d\r\n\r\n%s",
		method, len(body), body)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s, want 101", resp.Status)
	}
	return c, br
}
