package httpscope_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
	"github.com/connscope/connscope/internal/refused"
	"github.com/connscope/connscope/internal/selfsigned"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// ev is the part of an event a test looks at, copied out of Emit.
type ev struct {
	Msg      string
	ID       connscope.ID
	Side     connscope.Side
	Target   string
	Request  uint64
	Status   int
	Proto    string
	TLS      string
	TLSTime  time.Duration
	Idle     time.Duration
	TTFB     time.Duration
	ClosedBy string
	Op       string
	Err      error
	Headers  []connscope.Header
	Level    slog.Level
}

type memSink struct {
	mu  sync.Mutex
	evs []ev
}

func (s *memSink) Emit(e *connscope.Event) {
	c := ev{Msg: e.Message, ID: e.ID, Target: e.Target, Request: e.Request, Status: e.Status, Proto: e.Protocol,
		TLS: e.TLS, TLSTime: e.TLSTime, Idle: e.Idle, TTFB: e.TTFB, ClosedBy: e.ClosedBy, Op: e.Op, Err: e.Err,
		Headers: slices.Clone(e.Headers), Level: e.Level}
	if e.Conn != nil {
		c.ID, c.Side = e.Conn.ID(), e.Conn.Side()
	}
	s.mu.Lock()
	s.evs = append(s.evs, c)
	s.mu.Unlock()
}

// events returns the events of side (0: all).
func (s *memSink) events(side connscope.Side) []ev {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ev
	for _, e := range s.evs {
		if side == 0 || e.Side == side {
			out = append(out, e)
		}
	}
	return out
}

func messages(evs []ev) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Msg
	}
	return out
}

// waitFor polls until cond holds, for at most 5 s: some events (Socket
// Close after a server shuts down) come from other goroutines.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startTLS serves h over TLS (HTTP/2 enabled by ServeTLS) with an
// instrumented server and listener; it returns the base URL and a pool
// that trusts the certificate.
func startTLS(t *testing.T, spy *connscope.Spy, h http.Handler) (string, *tlsPool) {
	t.Helper()
	return startTLSServer(t, spy, &http.Server{Handler: h})
}

// startTLSServer is startTLS for a server the test configured itself; it
// sets srv.TLSConfig.
func startTLSServer(t *testing.T, spy *connscope.Spy, srv *http.Server) (string, *tlsPool) {
	t.Helper()
	cert, pool, err := selfsigned.New("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	httpscope.InstrumentServer(spy, srv, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeTLS(spy.WrapListener(ln), "", "")
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return "https://" + ln.Addr().String(), &tlsPool{&tls.Config{RootCAs: pool}}
}

type tlsPool struct{ cfg *tls.Config }

// startPlain serves h over plain HTTP/1.1 with an instrumented server.
func startPlain(t *testing.T, spy *connscope.Spy, h http.Handler, opts *httpscope.Options) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.Listener = spy.WrapListener(ts.Listener)
	httpscope.InstrumentServer(spy, ts.Config, opts)
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

func get(t *testing.T, c *http.Client, url string) *http.Response {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestHTTP2ThroughInstrumentedClientAndServer(t *testing.T) {
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	var serverProtos []int
	var mu sync.Mutex
	url, p := startTLS(t, spy, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		serverProtos = append(serverProtos, r.ProtoMajor)
		mu.Unlock()
		io.WriteString(w, "hello")
	}))
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = p.cfg
	client := &http.Client{Transport: httpscope.WrapTransport(spy, base, nil)}
	for i := range 3 {
		resp := get(t, client, fmt.Sprintf("%s/r%d?token=abc", url, i))
		if resp.ProtoMajor != 2 {
			t.Fatalf("request %d: client negotiated %s, want HTTP/2", i, resp.Proto)
		}
	}
	base.CloseIdleConnections()
	mu.Lock()
	if !slices.Equal(serverProtos, []int{2, 2, 2}) {
		t.Errorf("server saw protocols %v, want HTTP/2 three times", serverProtos)
	}
	mu.Unlock()

	waitFor(t, "client Socket Close", func() bool { return slices.Contains(messages(sink.events(connscope.Client)), connscope.MsgClose) })
	client1 := sink.events(connscope.Client)
	want := []string{
		connscope.MsgConnect, connscope.MsgTLS, connscope.MsgResponse, connscope.MsgIdle,
		connscope.MsgReuse, connscope.MsgResponse, connscope.MsgIdle,
		connscope.MsgReuse, connscope.MsgResponse, connscope.MsgIdle,
		connscope.MsgClose,
	}
	if got := messages(client1); !slices.Equal(got, want) {
		t.Fatalf("client events:\n got %q\nwant %q", got, want)
	}
	id := client1[0].ID
	var seqs []uint64
	for _, e := range client1 {
		if e.ID != id {
			t.Errorf("%s has id %v, want the connection's %v", e.Msg, e.ID, id)
		}
		if e.Msg == connscope.MsgResponse {
			seqs = append(seqs, e.Request)
			if e.Proto != "HTTP/2.0" || e.Status != 200 {
				t.Errorf("response event: proto %q status %d", e.Proto, e.Status)
			}
			if !strings.Contains(e.Target, "token=REDACTED") || strings.Contains(e.Target, "abc") {
				t.Errorf("target not redacted: %q", e.Target)
			}
		}
	}
	if !slices.Equal(seqs, []uint64{1, 2, 3}) {
		t.Errorf("request numbers %v, want 1 2 3", seqs)
	}
	if client1[1].TLS != "TLS 1.3 h2" {
		t.Errorf("TLS event says %q, want TLS 1.3 h2", client1[1].TLS)
	}

	server := sink.events(connscope.Server)
	got := messages(server)
	if len(got) == 0 || got[0] != connscope.MsgAccept {
		t.Fatalf("server events %q: want Socket Accept first", got)
	}
	var serverSeqs []uint64
	for _, e := range server {
		if e.Msg == connscope.MsgResponse {
			serverSeqs = append(serverSeqs, e.Request)
			if e.Proto != "HTTP/2.0" {
				t.Errorf("server response event proto %q", e.Proto)
			}
		}
	}
	if !slices.Equal(serverSeqs, []uint64{1, 2, 3}) {
		t.Errorf("server request numbers %v, want 1 2 3 on one connection", serverSeqs)
	}
}

func TestHTTP1KeepAliveReuse(t *testing.T) {
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	ts := startPlain(t, spy, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), nil)
	tr := &http.Transport{}
	client := &http.Client{Transport: httpscope.WrapTransport(spy, tr, nil)}
	if !tr.ForceAttemptHTTP2 {
		t.Error("a Transport that would have enabled HTTP/2 by itself must keep it after DialContext is set")
	}
	get(t, client, ts.URL+"/a")
	time.Sleep(20 * time.Millisecond)
	get(t, client, ts.URL+"/b")
	tr.CloseIdleConnections()
	waitFor(t, "Socket Close", func() bool { return slices.Contains(messages(sink.events(connscope.Client)), connscope.MsgClose) })
	evs := sink.events(connscope.Client)
	want := []string{connscope.MsgConnect, connscope.MsgResponse, connscope.MsgIdle, connscope.MsgReuse, connscope.MsgResponse, connscope.MsgIdle, connscope.MsgClose}
	if got := messages(evs); !slices.Equal(got, want) {
		t.Fatalf("client events:\n got %q\nwant %q", got, want)
	}
	reuse := evs[3]
	if reuse.ID != evs[0].ID || reuse.Request != 2 {
		t.Errorf("reuse: id %v request %d, want id %v request 2", reuse.ID, reuse.Request, evs[0].ID)
	}
	if reuse.Idle < 15*time.Millisecond {
		t.Errorf("reuse idle time %v, want about the 20ms pause", reuse.Idle)
	}
	if !strings.HasPrefix(evs[0].Target, "GET http://127.0.0.1:") || !strings.HasSuffix(evs[0].Target, "/a") {
		t.Errorf("Socket Connect target %q", evs[0].Target)
	}
	if evs[1].Proto != "HTTP/1.1" {
		t.Errorf("proto %q", evs[1].Proto)
	}
	if evs[6].ClosedBy != "local" {
		t.Errorf("closedBy %q, want local", evs[6].ClosedBy)
	}
}

func TestWrapTransportKeepsExplicitChoices(t *testing.T) {
	tests := []struct {
		name      string
		tr        *http.Transport
		wantForce bool
	}{
		{"zero", &http.Transport{}, true},
		{"custom TLS config", &http.Transport{TLSClientConfig: &tls.Config{}}, false},
		{"HTTP/2 off", &http.Transport{TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}, false},
		{"forced", &http.Transport{ForceAttemptHTTP2: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			httpscope.WrapTransport(&connscope.Spy{}, tt.tr, nil)
			if tt.tr.ForceAttemptHTTP2 != tt.wantForce {
				t.Errorf("ForceAttemptHTTP2 = %v, want %v", tt.tr.ForceAttemptHTTP2, tt.wantForce)
			}
			if tt.tr.DialContext == nil {
				t.Error("DialContext not instrumented")
			}
		})
	}
}

func TestInstrumentDefaultCoversGetAndDefaultClient(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer ts.Close()
	dt := http.DefaultTransport.(*http.Transport)
	dt.CloseIdleConnections()
	defer dt.CloseIdleConnections()

	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	undo := httpscope.InstrumentDefault(spy, nil)
	undone := false
	defer func() {
		if !undone {
			undo()
		}
	}()
	if _, ok := http.DefaultTransport.(*http.Transport); !ok {
		t.Fatal("http.DefaultTransport is no longer an *http.Transport")
	}

	resp, err := http.Get(ts.URL + "/get")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	req, _ := http.NewRequest("GET", ts.URL+"/client", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Request != req {
		t.Error("resp.Request is not the caller's request")
	}
	evs := sink.events(connscope.Client)
	want := []string{connscope.MsgConnect, connscope.MsgResponse, connscope.MsgIdle, connscope.MsgReuse, connscope.MsgResponse, connscope.MsgIdle}
	if got := messages(evs); !slices.Equal(got, want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
	if !strings.HasSuffix(evs[1].Target, "/get") || !strings.HasSuffix(evs[4].Target, "/client") {
		t.Errorf("targets %q, %q", evs[1].Target, evs[4].Target)
	}

	// A client with its own http.Client but the default transport is seen
	// at the connection level.
	dt.CloseIdleConnections()
	waitFor(t, "Socket Close", func() bool { return slices.Contains(messages(sink.events(0)), connscope.MsgClose) })
	before := len(sink.events(0))
	get(t, &http.Client{}, ts.URL+"/own-client")
	if got := messages(sink.events(0)[before:]); len(got) == 0 || got[0] != connscope.MsgConnect {
		t.Errorf("own http.Client on DefaultTransport: events %q, want Socket Connect", got)
	}

	undo()
	undone = true
	undo() // twice is harmless
	if http.DefaultClient.Transport != nil {
		t.Error("undo left http.DefaultClient.Transport set")
	}
	dt.CloseIdleConnections()
	before = len(sink.events(0))
	get(t, http.DefaultClient, ts.URL+"/after")
	time.Sleep(20 * time.Millisecond)
	for _, e := range sink.events(0)[before:] {
		if e.Msg != connscope.MsgClose { // the close of a connection dialed before undo
			t.Errorf("event %q after undo", e.Msg)
		}
	}
}

// TestInstrumentDefaultFollowsDefaultTransport: http.Get uses
// http.DefaultTransport as it is at each call; a program (or a test
// helper) that replaces it after InstrumentDefault is still obeyed, and
// its requests are still traced.
func TestInstrumentDefaultFollowsDefaultTransport(t *testing.T) {
	sink := &memSink{}
	undo := httpscope.InstrumentDefault(&connscope.Spy{Sink: sink}, nil)
	defer undo()
	old := http.DefaultTransport
	defer func() { http.DefaultTransport = old }()
	http.DefaultTransport = roundTripFunc(func(req *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 299, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Body: http.NoBody, Request: req}, nil
	})
	resp, err := http.Get("http://127.0.0.1:9/replaced") // never dialed: the replacement answers
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 299 {
		t.Fatalf("status %d: http.Get did not go through the replaced DefaultTransport", resp.StatusCode)
	}
	if evs := sink.events(0); len(evs) != 1 || evs[0].Msg != connscope.MsgResponse || evs[0].Status != 299 {
		t.Errorf("events %+v, want one HTTP(S) Response with status 299", evs)
	}
}

// TestZeroTransportAsDefaultTransport: a zero Transport goes through
// http.DefaultTransport, even when it is http.DefaultTransport itself.
func TestZeroTransportAsDefaultTransport(t *testing.T) {
	ts := startPlain(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), nil)
	old := http.DefaultTransport
	defer func() { http.DefaultTransport = old }()
	http.DefaultTransport = &httpscope.Transport{}
	resp := get(t, http.DefaultClient, ts.URL+"/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	http.DefaultTransport.(*httpscope.Transport).CloseIdleConnections()
}

func TestHijackedConnectionTrackedUntilClose(t *testing.T) {
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	ts := startPlain(t, spy, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
		brw.Flush()
		c.Close()
	}), nil)
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, "server Socket Close", func() bool { return slices.Contains(messages(sink.events(connscope.Server)), connscope.MsgClose) })
	got := messages(sink.events(connscope.Server))
	hj, cl := slices.Index(got, connscope.MsgHijack), slices.Index(got, connscope.MsgClose)
	if got[0] != connscope.MsgAccept || hj < 0 || cl < hj {
		t.Errorf("server events %q: want Accept, ..., Socket Hijack, ..., Socket Close", got)
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	var out bytes.Buffer
	sink := connscope.NewJSONSink(&out, nil)
	spy := &connscope.Spy{Sink: sink}
	opts := &httpscope.Options{LogHeaders: []string{"Authorization", "Cookie", "X-Request-Id", "X-Api-Key"}}
	ts := startPlain(t, spy, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: "setcookie-secret"})
		io.WriteString(w, "ok")
	}), opts)
	tr := &http.Transport{}
	client := &http.Client{Transport: httpscope.WrapTransport(spy, tr, opts)}
	u := strings.Replace(ts.URL, "http://", "http://alice:hunter2@", 1) + "/p?q=visible&token=tok-secret&api_key=key-secret&X-Amz-Signature=sig-secret"
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Authorization", "Bearer bearer-secret")
	req.Header.Set("Cookie", "session=cookie-secret")
	req.Header.Set("X-Api-Key", "header-secret")
	req.Header.Set("X-Request-Id", "req-42")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	tr.CloseIdleConnections()
	ts.Close()
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	log := out.String()
	for _, secret := range []string{"hunter2", "alice", "tok-secret", "key-secret", "sig-secret", "bearer-secret", "cookie-secret", "header-secret", "setcookie-secret", "YWxpY2U6aHVudGVyMg"} {
		if strings.Contains(log, secret) {
			t.Errorf("log contains %q", secret)
		}
	}
	for _, want := range []string{"q=visible", `"X-Request-Id":"req-42"`, `"Authorization":"REDACTED"`, "token=REDACTED"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s", want)
		}
	}
}

func TestResponseWriterKeepsInterfaces(t *testing.T) {
	type caps struct{ flusher, flushError, hijacker, readerFrom, stringWriter, pusher, controller bool }
	check := func(w http.ResponseWriter) caps {
		var c caps
		_, c.flusher = w.(http.Flusher)
		_, c.flushError = w.(interface{ FlushError() error })
		_, c.stringWriter = w.(io.StringWriter)
		_, c.hijacker = w.(http.Hijacker)
		_, c.readerFrom = w.(io.ReaderFrom)
		_, c.pusher = w.(http.Pusher)
		c.controller = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute)) == nil
		return c
	}
	for _, tt := range []struct {
		name string
		h2   bool
		want caps
	}{
		{"HTTP/1.1", false, caps{flusher: true, flushError: true, hijacker: true, readerFrom: true, stringWriter: true, controller: true}},
		{"HTTP/2", true, caps{flusher: true, flushError: true, stringWriter: true, pusher: true, controller: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spy := &connscope.Spy{}
			var mu sync.Mutex
			var got, bare caps
			h := func(dst *caps) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					mu.Lock()
					*dst = check(w)
					mu.Unlock()
				}
			}
			// The same checks on an uninstrumented server give the reference.
			for _, run := range []struct {
				spy *connscope.Spy
				dst *caps
			}{{spy, &got}, {nil, &bare}} {
				var url string
				var client *http.Client
				if tt.h2 {
					u, p := startTLS(t, run.spy, h(run.dst))
					tr := http.DefaultTransport.(*http.Transport).Clone()
					tr.TLSClientConfig = p.cfg
					t.Cleanup(tr.CloseIdleConnections)
					url, client = u, &http.Client{Transport: tr}
				} else {
					ts := startPlain(t, run.spy, h(run.dst), nil)
					tr := &http.Transport{}
					t.Cleanup(tr.CloseIdleConnections)
					url, client = ts.URL, &http.Client{Transport: tr}
				}
				get(t, client, url)
			}
			mu.Lock()
			defer mu.Unlock()
			if got != tt.want || got != bare {
				t.Errorf("instrumented writer has %+v, bare %+v, want %+v", got, bare, tt.want)
			}
		})
	}
}

func TestRequestErrors(t *testing.T) {
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	// A server that reads the request and closes without answering.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for { // until ln closes: a transport may retry on a fresh connection
			c, err := ln.Accept()
			if err != nil {
				return
			}
			http.ReadRequest(bufio.NewReader(c))
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: httpscope.WrapTransport(spy, tr, nil)}
	if _, err := client.Get("http://" + addr + "/hangup"); err == nil {
		t.Fatal("want an error from a server that hangs up")
	}
	ln.Close()
	wg.Wait()
	var reqErr *ev
	for _, e := range sink.events(0) {
		if e.Msg == connscope.MsgRequestError {
			reqErr = &e
		}
	}
	if reqErr == nil || reqErr.Request == 0 || reqErr.ID.IsZero() {
		t.Fatalf("want an HTTP(S) Error tied to its connection and request, got %+v", reqErr)
	}
	if kind, _ := connscope.Classify(reqErr.Err); kind != connscope.KindEOF {
		t.Errorf("error kind %q (%v), want eof", kind, reqErr.Err)
	}

	// A dial that fails.
	before := len(sink.events(0))
	_, err = client.Get("http://" + refused.Addr(t) + "/refused")
	if !errors.Is(err, errRefused()) {
		t.Fatalf("got %v, want connection refused", err)
	}
	got := sink.events(0)[before:]
	if len(got) != 2 || got[0].Msg != connscope.MsgError || got[0].Op != "dial" || got[1].Msg != connscope.MsgRequestError {
		t.Fatalf("events %q, want Socket Error (dial) then HTTP(S) Error", messages(got))
	}
	if kind, errno := connscope.Classify(got[0].Err); kind != connscope.KindRefused || errno != "ECONNREFUSED" {
		t.Errorf("dial error classified %s/%s", kind, errno)
	}
	if !strings.HasSuffix(got[0].Target, "/refused") {
		t.Errorf("dial error target %q", got[0].Target)
	}
	// The request's error names the dial that failed it: one id joins
	// them, as it joins a connection's events.
	if got[0].ID.IsZero() || got[1].ID != got[0].ID {
		t.Errorf("HTTP(S) Error id %v, want the failed dial's %v", got[1].ID, got[0].ID)
	}
	if got[1].Request != 0 {
		t.Errorf("HTTP(S) Error request %d, want none: no connection carried it", got[1].Request)
	}
}

func TestContextTraceStillCalled(t *testing.T) {
	// A trace the caller put in the request context must still run, and
	// the spy's own trace with it.
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	ts := startPlain(t, spy, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), nil)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: httpscope.WrapTransport(spy, tr, nil)}
	var gotConn, dnsOrConnect bool
	ctx := httptraceContext(&gotConn, &dnsOrConnect)
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !gotConn || !dnsOrConnect {
		t.Errorf("caller's trace: GotConn %v, ConnectDone %v; want both called", gotConn, dnsOrConnect)
	}
	evs := sink.events(connscope.Client)
	if got := messages(evs); len(got) < 3 || got[0] != connscope.MsgConnect || got[1] != connscope.MsgResponse || got[2] != connscope.MsgIdle {
		t.Fatalf("spy's events with the caller's trace: %q", got)
	}
	if want := "GET " + ts.URL; evs[0].Target != want || evs[1].Target != want || evs[1].Request != 1 {
		t.Errorf("Socket Connect target %q, response target %q request %d; want %q, 1", evs[0].Target, evs[1].Target, evs[1].Request, want)
	}
}

// TestRequestContextPassesThrough: the traced request's context is the
// caller's for everything but the trace: its values reach the dialer, and
// its cancellation ends the request with the error it would have had.
func TestRequestContextPassesThrough(t *testing.T) {
	type key struct{}
	spy := &connscope.Spy{Sink: &memSink{}}
	release := make(chan struct{})
	ts := startPlain(t, spy, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}), nil)
	defer close(release)
	var seen any
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		seen = ctx.Value(key{})
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: httpscope.WrapTransport(spy, tr, nil)}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL, nil)
	time.AfterFunc(50*time.Millisecond, cancel)
	resp, err := client.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("request succeeded; want it canceled")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	if seen != "v" {
		t.Errorf("the dialer saw value %v, want the caller's %q", seen, "v")
	}
}

// TestTTFBOfRetriedRequest: when the transport retries a request on a new
// connection (the reused one died before answering), the TTFB is the
// retry's, not measured from the failed attempt's write. Here the retry's
// answer comes before its body is written, so it has no TTFB at all.
func TestTTFBOfRetriedRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const hang = 300 * time.Millisecond
	done := make(chan struct{})
	go func() {
		defer close(done)
		c1, err := ln.Accept()
		if err != nil {
			return
		}
		br := bufio.NewReader(c1)
		if r, err := http.ReadRequest(br); err == nil {
			io.Copy(io.Discard, r.Body)
			io.WriteString(c1, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		if r, err := http.ReadRequest(br); err == nil { // the second request's first attempt
			io.Copy(io.Discard, r.Body)
		}
		time.Sleep(hang)
		c1.Close() // without answering: the transport retries on a new connection
		c2, err := ln.Accept()
		if err != nil {
			return
		}
		defer c2.Close()
		r, err := http.ReadRequest(bufio.NewReader(c2))
		if err != nil {
			return
		}
		io.WriteString(c2, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") // before reading the body
		io.Copy(io.Discard, r.Body)
	}()
	sink := &memSink{}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: httpscope.WrapTransport(&connscope.Spy{Sink: sink}, tr, nil), Timeout: 30 * time.Second}
	url := "http://" + ln.Addr().String() + "/"
	get(t, c, url).Body.Close()
	// A replayable body larger than the socket buffers: the retry cannot
	// finish writing it before the answer comes.
	req, err := http.NewRequest("GET", url, bytes.NewReader(make([]byte, 32<<20)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	<-done
	var ttfbs []time.Duration
	for _, e := range sink.events(connscope.Client) {
		if e.Msg == connscope.MsgResponse {
			ttfbs = append(ttfbs, e.TTFB)
		}
	}
	if len(ttfbs) != 2 {
		t.Fatalf("%d responses, want 2", len(ttfbs))
	}
	if ttfbs[1] >= hang {
		t.Errorf("retried request: TTFB %v counts the failed attempt (the server hung %v before closing it)", ttfbs[1], hang)
	}
}

// TestServerFlushErrorReturned: http.ResponseController.Flush returns the
// write error of a connection the client reset, through the instrumented
// writer as without it (FlushError, not a Flush that cannot fail).
func TestServerFlushErrorReturned(t *testing.T) {
	for _, spied := range []bool{false, true} {
		t.Run(fmt.Sprintf("spied=%v", spied), func(t *testing.T) {
			got := make(chan error, 1)
			reset := make(chan struct{})
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				<-reset
				rc := http.NewResponseController(w)
				buf := make([]byte, 64<<10)
				var err error
				for i := 0; i < 200 && err == nil; i++ { // bounded: the socket buffer fills long before
					w.Write(buf)
					err = rc.Flush()
				}
				got <- err
			})
			var spy *connscope.Spy
			if spied {
				spy = &connscope.Spy{Sink: &memSink{}}
			}
			ts := startPlain(t, spy, h, nil)
			c, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			c.(*net.TCPConn).SetLinger(0)
			c.Close() // RST
			time.Sleep(50 * time.Millisecond)
			close(reset)
			select {
			case err = <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("handler did not finish")
			}
			if err == nil {
				t.Error("ResponseController.Flush to a reset connection returned nil")
			}
		})
	}
}

// TestServerHandlerPanic: a handler that panics gets no response sent; its
// "HTTP(S) Response" says so (an error, no 200), and the panic still
// reaches net/http, which closes the connection as without the spy.
func TestServerHandlerPanic(t *testing.T) {
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	ts := startPlain(t, spy, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	}), nil)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(ts.URL)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got a response (%s) from a handler that panicked", resp.Status)
	}
	var e ev
	waitFor(t, "server response event", func() bool {
		for _, ev := range sink.events(connscope.Server) {
			if ev.Msg == connscope.MsgResponse {
				e = ev
				return true
			}
		}
		return false
	})
	if e.Status != 0 || e.Err == nil || e.Op != "handler" {
		t.Errorf("server event: status %d, op %q, error %q; want status 0 and the handler's error", e.Status, e.Op, e.Err)
	}
}

// TestHTTP2FailedStreamLeavesConnectionIdle: a request that fails on an
// HTTP/2 connection (here its context expires while the handler waits)
// ends its stream, not the connection, which goes back idle and serves
// the next request. Over TLS, and unencrypted (h2c), where the connection
// alone does not tell HTTP/2 from HTTP/1.
func TestHTTP2FailedStreamLeavesConnectionIdle(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			<-r.Context().Done() // the client resets the stream
			return
		}
		io.WriteString(w, "ok")
	})
	for _, tc := range []struct {
		name  string
		start func(t *testing.T, base *http.Transport) (url string)
		want  []string
	}{
		{"tls", func(t *testing.T, base *http.Transport) string {
			url, p := startTLS(t, nil, handler)
			base.TLSClientConfig = p.cfg
			return url
		}, []string{connscope.MsgConnect, connscope.MsgTLS, connscope.MsgResponse, connscope.MsgIdle,
			connscope.MsgReuse, connscope.MsgRequestError, connscope.MsgIdle}},
		{"h2c", func(t *testing.T, base *http.Transport) string {
			ts := httptest.NewUnstartedServer(handler)
			ts.Config.Protocols = new(http.Protocols)
			ts.Config.Protocols.SetUnencryptedHTTP2(true)
			ts.Start()
			t.Cleanup(ts.Close)
			base.Protocols = new(http.Protocols)
			base.Protocols.SetUnencryptedHTTP2(true) // and not HTTP1: h2c for http:// URLs
			oneConn(base)
			return ts.URL
		}, []string{connscope.MsgConnect, connscope.MsgResponse, connscope.MsgIdle,
			connscope.MsgReuse, connscope.MsgRequestError, connscope.MsgIdle}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			spy := &connscope.Spy{Sink: sink}
			base := http.DefaultTransport.(*http.Transport).Clone()
			url := tc.start(t, base)
			defer base.CloseIdleConnections()
			client := &http.Client{Transport: httpscope.WrapTransport(spy, base, nil)}
			if resp := get(t, client, url+"/first"); resp.ProtoMajor != 2 {
				t.Fatalf("first: %s, want HTTP/2", resp.Proto)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/hang", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := client.Do(req); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v, want the context's deadline", err)
			}
			evs := sink.events(connscope.Client)
			if got := messages(evs); !slices.Equal(got, tc.want) {
				t.Fatalf("client events:\n got %q\nwant %q", got, tc.want)
			}
			resp := get(t, client, url+"/after")
			if resp.ProtoMajor != 2 {
				t.Fatalf("after: %s, want HTTP/2", resp.Proto)
			}
			evs = sink.events(connscope.Client)
			if last := evs[len(evs)-3]; last.Msg != connscope.MsgReuse || last.ID != evs[0].ID || last.Request != 3 {
				t.Errorf("after the failed stream: %+v, want Reuse Socket of request 3 on the same connection", last)
			}
		})
	}
}

// TestHTTP2LostConnectionNotIdle: when the server drops an HTTP/2
// connection mid-request, the transport fails the stream before it closes
// the connection; the connection must not be reported idle in between.
// The dialer's Close takes a while (a proxy tunnel, say), which makes the
// window wide enough to be seen every time.
func TestHTTP2LostConnectionNotIdle(t *testing.T) {
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	type connKey struct{}
	url, p := startTLSServer(t, nil, &http.Server{
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) },
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/drop" {
				r.Context().Value(connKey{}).(net.Conn).Close()
				return
			}
			io.WriteString(w, "ok")
		}),
	})
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = p.cfg
	dialSlowClose(base)
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: httpscope.WrapTransport(spy, base, nil)}
	if resp := get(t, client, url+"/first"); resp.ProtoMajor != 2 {
		t.Fatalf("first: %s, want HTTP/2", resp.Proto)
	}
	if _, err := client.Get(url + "/drop"); err == nil {
		t.Fatal("want an error from a dropped connection")
	}
	waitFor(t, "client Socket Close", func() bool { return slices.Contains(messages(sink.events(connscope.Client)), connscope.MsgClose) })
	evs := sink.events(connscope.Client)
	// The read loop's "Socket End" (the server's FIN) races the caller's
	// "HTTP(S) Error", so after the reuse only membership is checked.
	want := []string{connscope.MsgConnect, connscope.MsgTLS, connscope.MsgResponse, connscope.MsgIdle,
		connscope.MsgReuse}
	got := messages(evs)
	if len(got) < len(want) || !slices.Equal(got[:len(want)], want) ||
		!slices.Contains(got[len(want):], connscope.MsgRequestError) || slices.Contains(got[len(want):], connscope.MsgIdle) {
		t.Fatalf("client events:\n got %q\nwant %q, then an HTTP(S) Error and no Socket Idle", got, want)
	}
}

// slowCloseConn is a connection whose Close takes 50 ms.
type slowCloseConn struct{ net.Conn }

// dialSlowClose makes t dial slowCloseConns, still with HTTP/2 over TLS.
func dialSlowClose(t *http.Transport) {
	var d net.Dialer
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return slowCloseConn{c}, nil
	}
	t.ForceAttemptHTTP2 = true // a DialContext turns it off
}

func (c slowCloseConn) Close() error {
	time.Sleep(50 * time.Millisecond)
	return c.Conn.Close()
}

// TestFailedTLSHandshakeIsAnEvent: a client that does not trust the
// server's certificate reports "TLS Handshake" with the error on the
// connection it dialed. (It comes after that connection's "Socket Close":
// the transport closes the connection before it reports the failure.)
// The request's "HTTP(S) Error" has that connection's id.
func TestFailedTLSHandshakeIsAnEvent(t *testing.T) {
	sink := &memSink{}
	spy := &connscope.Spy{Sink: sink}
	url, _ := startTLSServer(t, nil, &http.Server{
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
		ErrorLog: log.New(io.Discard, "", 0), // the server's side of the failure is expected
	})
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = &tls.Config{RootCAs: x509.NewCertPool()} // trusts nothing
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: httpscope.WrapTransport(spy, base, nil)}
	_, err := client.Get(url + "/x")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("Get: %v, want x509.UnknownAuthorityError", err)
	}
	waitFor(t, "client Socket Close", func() bool { return slices.Contains(messages(sink.events(connscope.Client)), connscope.MsgClose) })
	evs := sink.events(connscope.Client)
	got := messages(evs)
	i := slices.Index(got, connscope.MsgTLS)
	if i < 1 || got[0] != connscope.MsgConnect {
		t.Fatalf("client events %q: want Socket Connect, then TLS Handshake", got)
	}
	if e := evs[i]; e.ID != evs[0].ID || !errors.As(e.Err, &unknown) || e.Target != "GET "+url+"/x" {
		t.Errorf("TLS Handshake on %v for %q with error %v; want the dialed connection %v, the request's target, the certificate error",
			e.ID, e.Target, e.Err, evs[0].ID)
	}
	if n := strings.Count(strings.Join(got, "|"), connscope.MsgTLS); n != 1 {
		t.Errorf("%d TLS Handshake events, want 1: %q", n, got)
	}
	// The request got no connection, but it dialed one: its error names
	// that connection, as it names a dial that failed (it was null, and
	// could be joined to its handshake by target alone).
	var reqErr *ev
	for _, e := range sink.events(0) {
		if e.Msg == connscope.MsgRequestError {
			reqErr = &e
		}
	}
	if reqErr == nil || reqErr.ID != evs[0].ID || reqErr.Request != 0 {
		t.Errorf("HTTP(S) Error %+v; want one with the id of the connection whose handshake failed, %v, and no request number", reqErr, evs[0].ID)
	}
}

// TestServerTLSHandshake: an instrumented TLS server reports each
// connection's handshake once: a good one before its first request, a
// failed one with its error (after the connection's "Socket Close", when
// net/http reports the connection closed), and not one the server
// interrupts by closing, which is the program's own doing. net/http still
// logs a failure to the server's ErrorLog.
func TestServerTLSHandshake(t *testing.T) {
	for _, tc := range []struct {
		name    string
		request func(t *testing.T, srv *http.Server, url string, pool *tlsPool)
		ok      bool   // the handshake succeeds
		err     string // a failure's error, "" for none reported
		log     string // the failure's ErrorLog line
	}{
		{"trusted client", func(t *testing.T, _ *http.Server, url string, p *tlsPool) {
			tr := &http.Transport{TLSClientConfig: p.cfg, ForceAttemptHTTP2: true}
			defer tr.CloseIdleConnections()
			get(t, &http.Client{Transport: tr}, url+"/")
		}, true, "", ""},
		{"plain HTTP to the TLS port", func(t *testing.T, _ *http.Server, url string, _ *tlsPool) {
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			if resp := get(t, &http.Client{Transport: tr}, "http"+strings.TrimPrefix(url, "https")+"/"); resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status %d, want the server's 400", resp.StatusCode)
			}
		}, false, "does not look like a TLS handshake", "client sent an HTTP request to an HTTPS server"},
		{"client that does not trust the certificate", func(t *testing.T, _ *http.Server, url string, _ *tlsPool) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x509.NewCertPool()}}
			defer tr.CloseIdleConnections()
			if _, err := (&http.Client{Transport: tr}).Get(url + "/"); err == nil {
				t.Fatal("want a certificate error")
			}
		}, false, "bad certificate", "bad certificate"},
		{"client that leaves before its hello", func(t *testing.T, _ *http.Server, url string, _ *tlsPool) {
			c, err := net.Dial("tcp", strings.TrimPrefix(url, "https://"))
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}, false, "EOF", "EOF"},
		{"server closed in the handshake", func(t *testing.T, srv *http.Server, url string, _ *tlsPool) {
			c, err := net.Dial("tcp", strings.TrimPrefix(url, "https://")) // and no ClientHello
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			time.Sleep(20 * time.Millisecond) // the server is in the handshake's first read
			srv.Close()
		}, false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			spy := &connscope.Spy{Sink: sink}
			closed := make(chan struct{}, 1)
			var errLog syncBuffer
			srv := &http.Server{
				Handler:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
				ErrorLog: log.New(&errLog, "", 0),
				ConnState: func(_ net.Conn, s http.ConnState) {
					if s == http.StateClosed {
						select { // after the spy's ConnState, which InstrumentServer runs first
						case closed <- struct{}{}:
						default:
						}
					}
				},
			}
			url, p := startTLSServer(t, spy, srv)
			tc.request(t, srv, url, p)
			if !tc.ok {
				select {
				case <-closed:
				case <-time.After(5 * time.Second):
					t.Fatal("no ConnState(StateClosed)")
				}
			}
			evs := sink.events(connscope.Server)
			got := messages(evs)
			want := 0
			if tc.ok || tc.err != "" {
				want = 1
			}
			if n := strings.Count(strings.Join(got, "|"), connscope.MsgTLS); n != want {
				t.Fatalf("%d TLS Handshake events in %q, want %d", n, got, want)
			}
			if want == 0 {
				return
			}
			i := slices.Index(got, connscope.MsgTLS)
			e := evs[i]
			if e.ID != evs[0].ID || got[0] != connscope.MsgAccept {
				t.Errorf("server events %q: TLS Handshake on %v, want the accepted connection %v", got, e.ID, evs[0].ID)
			}
			if !tc.ok {
				if e.Err == nil || !strings.Contains(e.Err.Error(), tc.err) {
					t.Errorf("TLS Handshake error %v, want one with %q", e.Err, tc.err)
				}
				if l := errLog.String(); !strings.Contains(l, "TLS handshake error") || !strings.Contains(l, tc.log) {
					t.Errorf("ErrorLog %q, want net/http's line with %q", l, tc.log)
				}
				return
			}
			if e.Err != nil || e.TLS != "TLS 1.3 h2" {
				t.Errorf("server events %q: TLS Handshake %+v; want TLS 1.3 h2, no error", got, e)
			}
			if r := slices.Index(got, connscope.MsgResponse); r < i {
				t.Errorf("server events %q: want TLS Handshake before HTTP(S) Response", got)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer for a logger on another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
