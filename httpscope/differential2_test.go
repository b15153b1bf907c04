package httpscope_test

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
	"github.com/connscope/connscope/internal/refused"
)

// A second differential pass (see differential_test.go): what a program
// sees of its pooled connections, proxies, 100-continue, full duplex,
// timeouts, shutdown and its own hooks, bare and instrumented. Each
// comparison guards something the instrumentation could break: an error
// net/http inspects (a pooled connection's EOF, a deadline's timeout), a
// method found on a wrapped connection or ResponseWriter, a hook chained
// or composed with the spy's, a context of httpscope's around the
// program's. Run with -v to see what bare showed.

// diffEach runs run in each mode, over p, and fails where a mode saw
// something other than bare did (ports aside).
func diffEach(t *testing.T, modes []diffMode, p diffProto, run func(t *testing.T, m diffMode) string) {
	t.Helper()
	var ref string
	for i, m := range modes {
		got := norm(run(t, m))
		if i == 0 {
			ref = got
			t.Logf("%s bare: %s", p, ref) // what all modes must see, for -v
			continue
		}
		if got != ref {
			t.Errorf("%s: instrumented %s differs from bare:\nbare:   %s\n%-7s %s", p, m.name, ref, m.name+":", got)
		}
	}
}

// serverView is what a program's own server hooks saw: its ConnState
// calls, in order, per connection (numbered by the program's
// ConnContext), and lines its handler logged.
type serverView struct {
	mu     sync.Mutex
	conns  atomic.Int64
	states map[int64][]http.ConnState
	lines  []string
}

type connNumKey struct{}

// hook sets srv's ConnContext and ConnState to the program's own, which
// record into v.
func (v *serverView) hook(srv *http.Server) *http.Server {
	v.states = map[int64][]http.ConnState{}
	nums := map[net.Conn]int64{}
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		n := v.conns.Add(1)
		v.mu.Lock()
		nums[c] = n
		v.mu.Unlock()
		return context.WithValue(ctx, connNumKey{}, &connCounter{n: n})
	}
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		v.mu.Lock()
		defer v.mu.Unlock()
		n, ok := nums[c]
		if !ok {
			n = -1 // ConnState before ConnContext: tell it apart
		}
		v.states[n] = append(v.states[n], s)
	}
	if srv.ErrorLog == nil {
		srv.ErrorLog = log.New(io.Discard, "", 0)
	}
	return srv
}

// settle closes env's idle client connections and waits until the
// server has seen each of its connections end (closed or hijacked), so
// that the states it saw are all there.
func (v *serverView) settle(t *testing.T, env *diffEnv) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		// Again and again: an HTTP/2 connection is idle, and so closed,
		// only once the transport has cleaned up after its last stream,
		// on a goroutine of its own.
		env.tr.CloseIdleConnections()
		if v.ended() {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the server's connections did not end: %s", v)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func (v *serverView) ended() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, s := range v.states {
		if last := s[len(s)-1]; last != http.StateClosed && last != http.StateHijacked {
			return false
		}
	}
	return true
}

func (v *serverView) logf(format string, args ...any) {
	v.mu.Lock()
	v.lines = append(v.lines, fmt.Sprintf(format, args...))
	v.mu.Unlock()
}

func (v *serverView) String() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "conns %d", v.conns.Load())
	for n := int64(-1); n <= v.conns.Load(); n++ {
		if s, ok := v.states[n]; ok {
			fmt.Fprintf(&b, ", conn %d %v", n, s)
		}
	}
	if len(v.lines) > 0 {
		fmt.Fprintf(&b, "; handler: %s", strings.Join(v.lines, "; "))
	}
	return b.String()
}

// connCounter counts a connection's requests, for handlers that act on
// the nth.
type connCounter struct {
	n    int64
	reqs atomic.Int64
}

func connOf(r *http.Request) (conn, req int64) {
	c := r.Context().Value(connNumKey{}).(*connCounter)
	return c.n, c.reqs.Add(1)
}

// TestDifferentialClosedIdleConnection: the scenario connscope exists for.
// A pooled keep-alive connection that the server has given up on: it reads
// the next request and closes (the deterministic form of a request sent
// as the peer's idle FIN is in flight). net/http retries what it may
// (GET; a body it can get again with an idempotent method or an
// Idempotency-Key) on a new connection, and fails the rest.
func TestDifferentialClosedIdleConnection(t *testing.T) {
	// NewRequest sets GetBody for a *strings.Reader, not for a reader it
	// does not know.
	withGetBody := func() io.Reader { return strings.NewReader("posted") }
	withoutGetBody := func() io.Reader { return io.MultiReader(strings.NewReader("posted")) }
	cases := []struct {
		name   string
		method string
		body   func() io.Reader // nil: no body
		key    bool             // Idempotency-Key
	}{
		{"GET", "GET", nil, false},
		{"POST with GetBody", "POST", withGetBody, false},
		{"POST without GetBody", "POST", withoutGetBody, false},
		{"POST with GetBody and Idempotency-Key", "POST", withGetBody, true},
		{"POST without GetBody, Idempotency-Key", "POST", withoutGetBody, true},
	}
	for _, rst := range []bool{false, true} {
		for _, p := range []diffProto{h1, h1TLS} {
			for _, rc := range cases {
				name := fmt.Sprintf("%s %s rst=%v", rc.name, p, rst)
				t.Run(name, func(t *testing.T) {
					diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
						var v serverView
						srv := v.hook(&http.Server{})
						srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
							c, n := connOf(r)
							body, _ := io.ReadAll(r.Body)
							v.logf("conn %d req %d %s %q key %q", c, n, r.Method, body, r.Header.Get("Idempotency-Key"))
							if n == 2 {
								conn, _, err := http.NewResponseController(w).Hijack()
								if err != nil {
									v.logf("hijack: %v", err)
									return
								}
								if rst {
									setLinger0(conn)
								}
								conn.Close()
								return
							}
							io.WriteString(w, "ok")
						})
						env := startDiff(t, m, p, srv, nil)
						var out []string
						// A GET pools the connection; the case's request reuses it.
						req, _ := http.NewRequestWithContext(bound(t), "GET", env.url, nil)
						out = append(out, describe(env.client.Do(req)))
						var body io.Reader
						if rc.body != nil {
							body = rc.body()
						}
						req, _ = http.NewRequestWithContext(bound(t), rc.method, env.url, body)
						if rc.key {
							req.Header.Set("Idempotency-Key", "k1")
						}
						out = append(out, describe(env.client.Do(req)))
						v.settle(t, env)
						return strings.Join(out, "\n") + "\nserver: " + v.String()
					})
				})
			}
		}
	}
}

// bound is a context that ends a request the test would otherwise wait
// on for good, if the scenario goes wrong.
func bound(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// setLinger0 makes c's close a reset (through TLS too).
func setLinger0(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	c.(interface{ SetLinger(int) error }).SetLinger(0)
}

// TestDifferentialReverseProxy: httputil.ReverseProxy in front of a
// backend. Instrumented "client" is the proxy's transport (and the
// program's client in front), "server" both servers.
func TestDifferentialReverseProxy(t *testing.T) {
	refusedAddr := refused.Addr(t)
	for _, p := range []diffProto{h1, h2TLS} {
		for _, path := range []string{"/stream", "/hangup", "/hangup-headers", "/early", "/refused"} {
			t.Run(path+" "+p.String(), func(t *testing.T) {
				diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
					var v serverView
					next := make(chan struct{})
					backend := v.hook(&http.Server{})
					backend.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						switch r.URL.Path {
						case "/stream": // a line, then the next once the client has the first
							w.Header().Set("Trailer", "X-T")
							io.WriteString(w, "a\n")
							http.NewResponseController(w).Flush()
							select {
							case <-next:
								io.WriteString(w, "b\n")
							case <-time.After(5 * time.Second):
								io.WriteString(w, "the proxy held the first line back\n")
							}
							w.Header().Set("X-T", "t")
						case "/hangup": // part of the body, then the connection or stream is cut
							w.Header().Set("Content-Length", "10")
							io.WriteString(w, "abc")
							http.NewResponseController(w).Flush()
							panic(http.ErrAbortHandler)
						case "/hangup-headers":
							panic(http.ErrAbortHandler)
						case "/early":
							w.Header().Set("Link", "</a>")
							w.WriteHeader(http.StatusEarlyHints)
							io.WriteString(w, "late")
						}
					})
					be := startDiff(t, m, p, backend, nil)
					target, _ := url.Parse(be.url)
					if path == "/refused" { // the ErrorHandler's
						target.Host = refusedAddr
					}
					var pv serverView
					var errLog syncBuffer
					rp := &httputil.ReverseProxy{
						Rewrite:       func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
						Transport:     be.client.Transport,
						FlushInterval: -1,
						ErrorLog:      log.New(&errLog, "", 0),
						ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
							pv.logf("ErrorHandler: %s", describeErr(err))
							w.WriteHeader(http.StatusBadGateway)
						},
					}
					front := startDiff(t, m, p, pv.hook(&http.Server{Handler: rp}), nil)
					var got1xx []int
					ctx := httptrace.WithClientTrace(bound(t), &httptrace.ClientTrace{
						Got1xxResponse: func(code int, _ textproto.MIMEHeader) error { got1xx = append(got1xx, code); return nil },
					})
					req, _ := http.NewRequestWithContext(ctx, "GET", front.url+path, nil)
					resp, err := front.client.Do(req)
					var out string
					if err == nil && path == "/stream" {
						br := bufio.NewReader(resp.Body)
						line, err := br.ReadString('\n')
						close(next)
						rest, err2 := io.ReadAll(br)
						resp.Body.Close()
						out = fmt.Sprintf("%s %s: %q %v, then %q %v, trailer %v", resp.Proto, resp.Status, line, err, rest, err2, resp.Trailer)
					} else {
						out = describe(resp, err)
					}
					v.settle(t, be)
					pv.settle(t, front)
					return fmt.Sprintf("%s 1xx %v\nbackend: %s\nproxy: %s\nproxy log: %s", out, got1xx, &v, &pv, errLog.String())
				})
			})
		}
	}
}

// TestDifferentialExpectContinue: a request that waits for "100
// Continue" (a server that reads its body answers it; one that answers
// first gets no body), and 1xx responses as the program's own
// ClientTrace sees them, including one whose Got1xxResponse fails the
// request.
func TestDifferentialExpectContinue(t *testing.T) {
	errHook := errors.New("the program's Got1xxResponse refused it")
	for _, p := range []diffProto{h1, h1TLS, h2TLS, h2C} {
		for _, path := range []string{"/read", "/refuse", "/hints", "/hints-refused"} {
			t.Run(path+" "+p.String(), func(t *testing.T) {
				diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
					var v serverView
					srv := v.hook(&http.Server{})
					srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						c, n := connOf(r)
						switch r.URL.Path {
						case "/read":
							body, err := io.ReadAll(r.Body)
							v.logf("conn %d req %d: %q %v", c, n, body, err)
						case "/refuse":
							v.logf("conn %d req %d: refused", c, n)
							w.WriteHeader(http.StatusExpectationFailed)
						case "/hints", "/hints-refused":
							w.Header().Set("Link", "</a>")
							w.WriteHeader(http.StatusEarlyHints)
							w.WriteHeader(http.StatusEarlyHints)
							io.WriteString(w, "final")
						}
					})
					env := startDiff(t, m, p, srv, h2cOneConn(p, func(tr *http.Transport) { tr.ExpectContinueTimeout = 5 * time.Second }))
					var out []string
					for range 2 {
						// The hooks run on the transport's read and write
						// loops: their order is a race, their counts are not,
						// except Wait100Continue's after an answer that did
						// not wait for the body.
						var mu sync.Mutex
						var wait100, got100 int
						var got1xx []string
						ctx, cancel := context.WithCancel(bound(t))
						ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
							Wait100Continue: func() { mu.Lock(); wait100++; mu.Unlock() },
							Got100Continue:  func() { mu.Lock(); got100++; mu.Unlock() },
							Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
								mu.Lock()
								defer mu.Unlock()
								got1xx = append(got1xx, fmt.Sprintf("%d %v", code, h))
								if path == "/hints-refused" && len(got1xx) == 1 {
									return errHook
								}
								return nil
							},
						})
						req, _ := http.NewRequestWithContext(ctx, "POST", env.url+path, strings.NewReader("the body"))
						req.Header.Set("Expect", "100-continue")
						resp, err := env.client.Do(req)
						d := describe(resp, err)
						cancel() // as a program's deferred cancel: HTTP/2 ends a refused body's wait then
						mu.Lock()
						if path != "/read" {
							wait100 = -1
						}
						out = append(out, fmt.Sprintf("%s; is the hook's error: %v; Wait100Continue %d, Got100Continue %d, Got1xxResponse %v", d, errors.Is(err, errHook), wait100, got100, got1xx))
						mu.Unlock()
					}
					v.settle(t, env)
					return strings.Join(out, "\n") + "\nserver: " + v.String()
				})
			})
		}
	}
}

// TestDifferentialResponseController: http.ResponseController through the
// instrumented server's ResponseWriter (it reaches the server's by
// Unwrap): a full-duplex exchange, the request body read while the
// response is written, and the read and write deadlines.
func TestDifferentialResponseController(t *testing.T) {
	for _, p := range []diffProto{h1, h1TLS, h2TLS, h2C} {
		for _, path := range []string{"/duplex", "/read-deadline", "/write-deadline", "/methods"} {
			if path == "/write-deadline" && p == h1TLS {
				// net/http closes the connection inside the Write that
				// failed, and crypto/tls's Close then waits up to 5 s to
				// send its close_notify to a client that does not read.
				continue
			}
			t.Run(path+" "+p.String(), func(t *testing.T) {
				diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
					var v serverView
					handlerDone := make(chan struct{})
					srv := v.hook(&http.Server{})
					srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						defer close(handlerDone)
						rc := http.NewResponseController(w)
						switch r.URL.Path {
						case "/duplex": // echo each line as it comes
							v.logf("EnableFullDuplex: %v", rc.EnableFullDuplex())
							br := bufio.NewReader(r.Body)
							for {
								line, err := br.ReadString('\n')
								if err != nil {
									v.logf("read: %v", err)
									return
								}
								io.WriteString(w, "echo "+line)
								if err := rc.Flush(); err != nil {
									v.logf("flush: %v", err)
								}
							}
						case "/read-deadline": // a body that does not come
							v.logf("SetReadDeadline: %v", rc.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
							_, err := io.ReadAll(r.Body)
							v.logf("read: %s, is os.ErrDeadlineExceeded %v", describeErr(err), errors.Is(err, os.ErrDeadlineExceeded))
							w.WriteHeader(http.StatusRequestTimeout)
						case "/write-deadline": // a client that does not read
							v.logf("SetWriteDeadline: %v", rc.SetWriteDeadline(time.Now().Add(20*time.Millisecond)))
							chunk := make([]byte, 64<<10)
							var err error
							for i := 0; i < 1024 && err == nil; i++ {
								_, err = w.Write(chunk)
							}
							if err == nil {
								err = rc.Flush()
							}
							v.logf("write: %s, is os.ErrDeadlineExceeded %v", describeErr(err), errors.Is(err, os.ErrDeadlineExceeded))
						case "/methods":
							v.logf("EnableFullDuplex: %v; SetReadDeadline: %v; SetWriteDeadline: %v; Flush: %v",
								rc.EnableFullDuplex(), rc.SetReadDeadline(time.Time{}), rc.SetWriteDeadline(time.Time{}), rc.Flush())
							if p != h1 && p != h1TLS { // over HTTP/1, the test's client would have to answer it
								_, _, err := rc.Hijack()
								v.logf("Hijack: %v, is http.ErrNotSupported %v", err, errors.Is(err, http.ErrNotSupported))
							}
						}
					})
					env := startDiff(t, m, p, srv, nil)
					pr, pw := io.Pipe()
					defer pw.Close()
					req, _ := http.NewRequestWithContext(bound(t), "POST", env.url+path, pr)
					var out string
					switch path {
					case "/duplex":
						// The first line goes with the request (HTTP/1's
						// transport may wait for it), the second only once its
						// echo is back: the exchange is full duplex.
						go io.WriteString(pw, "1\n")
						resp, err := env.client.Do(req)
						if err != nil {
							out = describe(resp, err)
							break
						}
						br := bufio.NewReader(resp.Body)
						first, err1 := br.ReadString('\n')
						io.WriteString(pw, "2\n")
						second, err2 := br.ReadString('\n')
						pw.Close()
						rest, err3 := io.ReadAll(br)
						resp.Body.Close()
						out = fmt.Sprintf("%s %s: %q %v, %q %v, %q %v", resp.Proto, resp.Status, first, err1, second, err2, rest, err3)
					case "/write-deadline":
						pw.Close()
						resp, err := env.client.Do(req)
						if err != nil {
							out = describe(resp, err)
							break
						}
						within(t, handlerDone) // only then read
						n, err := io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						out = fmt.Sprintf("%s %s: read %v bytes, %s", resp.Proto, resp.Status, n > 0, describeErr(err))
					case "/read-deadline":
						go func() {
							select {
							case <-handlerDone:
							case <-time.After(5 * time.Second):
							}
							pw.Close()
						}()
						out = describe(env.client.Do(req))
					default:
						pw.Close()
						out = describe(env.client.Do(req))
					}
					v.settle(t, env)
					return out + "\nserver: " + v.String()
				})
			})
		}
	}
}

// waitState waits until the server has seen connection n reach state s.
func (v *serverView) waitState(t *testing.T, n int64, s http.ConnState) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		v.mu.Lock()
		states := v.states[n]
		v.mu.Unlock()
		if len(states) > 0 && states[len(states)-1] == s {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection %d never became %v: %s", n, s, v)
		}
		time.Sleep(time.Millisecond)
	}
}

// rawDial connects to env's server as a client that is not net/http's
// (over TLS if env's URL says https).
func rawDial(t *testing.T, env *diffEnv) net.Conn {
	t.Helper()
	u, _ := url.Parse(env.url)
	var c net.Conn
	var err error
	if u.Scheme == "https" {
		c, err = tls.Dial("tcp", u.Host, &tls.Config{RootCAs: env.tr.TLSClientConfig.RootCAs, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = net.Dial("tcp", u.Host)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// TestDifferentialServerTimeouts: http.Server's ReadHeaderTimeout,
// ReadTimeout, WriteTimeout, IdleTimeout and MaxHeaderBytes, which net/http
// applies through the connection's deadlines and reads: the instrumented
// listener's connections must fail the same way.
func TestDifferentialServerTimeouts(t *testing.T) {
	serverModes := []diffMode{diffBare, diffServer}
	for _, p := range []diffProto{h1, h1TLS} {
		t.Run("ReadHeaderTimeout "+p.String(), func(t *testing.T) {
			diffEach(t, serverModes, p, func(t *testing.T, m diffMode) string {
				var v serverView
				srv := v.hook(&http.Server{ReadHeaderTimeout: 20 * time.Millisecond, Handler: http.NotFoundHandler()})
				env := startDiff(t, m, p, srv, nil)
				c := rawDial(t, env)
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n") // and no end of the header
				got, err := io.ReadAll(c)
				v.settle(t, env)
				return fmt.Sprintf("client read %q, %v\nserver: %s", got, err, &v)
			})
		})
		if p != h1 {
			continue // the same close (500 ms of it net/http's wait to avoid a reset) over TLS
		}
		// net/http answers 431 and half-closes: the wrapper must keep
		// CloseWrite, or the client may get a reset instead.
		t.Run("MaxHeaderBytes "+p.String(), func(t *testing.T) {
			diffEach(t, serverModes, p, func(t *testing.T, m diffMode) string {
				var v serverView
				srv := v.hook(&http.Server{MaxHeaderBytes: 1024, Handler: http.NotFoundHandler()})
				env := startDiff(t, m, p, srv, nil)
				c := rawDial(t, env)
				fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 8<<10))
				got, err := io.ReadAll(c)
				// Not settled: the server closes 500 ms after its half-close.
				return fmt.Sprintf("client read %q, %v; server conns %d", got, err, v.conns.Load())
			})
		})
	}
	for _, p := range []diffProto{h1, h1TLS, h2TLS, h2C} {
		t.Run("ReadTimeout "+p.String(), func(t *testing.T) {
			diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
				var v serverView
				srv := v.hook(&http.Server{ReadTimeout: 20 * time.Millisecond})
				srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, err := io.ReadAll(r.Body)
					v.logf("read %q: %s, is os.ErrDeadlineExceeded %v", body, describeErr(err), errors.Is(err, os.ErrDeadlineExceeded))
					w.WriteHeader(http.StatusRequestTimeout)
				})
				env := startDiff(t, m, p, srv, nil)
				pr, pw := io.Pipe()
				defer pw.Close()
				go io.WriteString(pw, "abc") // and no more until the answer
				req, _ := http.NewRequestWithContext(bound(t), "POST", env.url, pr)
				out := describe(env.client.Do(req))
				pw.Close()
				v.settle(t, env)
				return out + "\nserver: " + v.String()
			})
		})
		t.Run("WriteTimeout "+p.String(), func(t *testing.T) {
			diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
				var v serverView
				srv := v.hook(&http.Server{WriteTimeout: 20 * time.Millisecond})
				srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					// Well past the deadline, which was set before the
					// handler started: no race.
					time.Sleep(60 * time.Millisecond)
					_, err := io.WriteString(w, "late")
					if err == nil {
						err = http.NewResponseController(w).Flush()
					}
					v.logf("write: %v", err)
				})
				env := startDiff(t, m, p, srv, nil)
				req, _ := http.NewRequestWithContext(bound(t), "GET", env.url, nil)
				out := describe(env.client.Do(req))
				v.settle(t, env)
				return out + "\nserver: " + v.String()
			})
		})
		if p == h2TLS || p == h2C {
			// An HTTP/2 server that timed a connection out sends GOAWAY and
			// closes it only a second later (or when the client does,
			// which net/http's does not for a connection it is not using).
			continue
		}
		t.Run("IdleTimeout "+p.String(), func(t *testing.T) {
			diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
				var v serverView
				srv := v.hook(&http.Server{IdleTimeout: 20 * time.Millisecond})
				srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					c, n := connOf(r)
					fmt.Fprintf(w, "conn %d req %d", c, n)
				})
				env := startDiff(t, m, p, srv, oneConn)
				req, _ := http.NewRequestWithContext(bound(t), "GET", env.url, nil)
				first := describe(env.client.Do(req))
				v.waitState(t, 1, http.StateClosed) // the server gave up on it
				second := describe(env.client.Do(req))
				v.settle(t, env)
				return first + "\n" + second + "\nserver: " + v.String()
			})
		})
	}
	for _, p := range []diffProto{h2TLS, h2C} {
		t.Run("MaxHeaderBytes "+p.String(), func(t *testing.T) {
			diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
				var v serverView
				srv := v.hook(&http.Server{MaxHeaderBytes: 1024, Handler: http.NotFoundHandler()})
				env := startDiff(t, m, p, srv, h2cOneConn(p, nil))
				// The first request, small, also has the client learn the
				// server's limit (SETTINGS) before the big one: whether it
				// has by the first is a race.
				var out []string
				for _, size := range []int{0, 8 << 10} {
					req, _ := http.NewRequestWithContext(bound(t), "GET", env.url, nil)
					req.Header.Set("X-Big", strings.Repeat("a", size))
					out = append(out, describe(env.client.Do(req)))
				}
				v.settle(t, env)
				return strings.Join(out, "\n") + "\nserver: " + v.String()
			})
		})
	}
}

// TestDifferentialShutdown: Server.Shutdown with an idle connection, an
// active request and (HTTP/1) a hijacked connection, Shutdown whose
// context ends first, and Server.Close. The program's RegisterOnShutdown
// runs; the listener closes; idle connections close at once; the active
// request finishes; a hijacked connection is the handler's, left open.
func TestDifferentialShutdown(t *testing.T) {
	for _, p := range []diffProto{h1, h1TLS, h2TLS, h2C} {
		for _, how := range []string{"Shutdown", "Shutdown past its deadline", "Close"} {
			t.Run(how+" "+p.String(), func(t *testing.T) {
				diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
					var v serverView
					started, release := make(chan struct{}), make(chan struct{})
					hijacked := make(chan net.Conn, 1)
					srv := v.hook(&http.Server{})
					srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						switch r.URL.Path {
						case "/slow":
							close(started)
							select {
							case <-release:
							case <-time.After(5 * time.Second):
							}
							io.WriteString(w, "slow")
						case "/hijack":
							c, brw, err := http.NewResponseController(w).Hijack()
							if err != nil {
								v.logf("hijack: %v", err)
								return
							}
							brw.Flush()
							hijacked <- c
						default:
							io.WriteString(w, "fast")
						}
					})
					onShutdown := make(chan struct{})
					srv.RegisterOnShutdown(func() { close(onShutdown) })
					env := startDiff(t, m, p, srv, h2cOneConn(p, nil))
					defer func() {
						select {
						case <-release:
						default:
							close(release)
						}
					}()
					var out []string
					slow := make(chan string, 1)
					go func() {
						req, _ := http.NewRequestWithContext(bound(t), "GET", env.url+"/slow", nil)
						resp, err := env.client.Do(req)
						if how == "Close" && err != nil {
							// A FIN or, if the server had not read all the
							// client sent, a reset: a race.
							lost := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
							slow <- fmt.Sprintf("failed, the connection lost: %v", lost)
							return
						}
						slow <- describe(resp, err)
					}()
					within(t, started)
					req, _ := http.NewRequestWithContext(bound(t), "GET", env.url, nil)
					out = append(out, "fast: "+describe(env.client.Do(req)))
					var hj, raw net.Conn
					if p == h1 || p == h1TLS {
						raw = rawDial(t, env)
						io.WriteString(raw, "GET /hijack HTTP/1.1\r\nHost: x\r\n\r\n")
						hj = within(t, hijacked)
						defer hj.Close()
					}
					// The idle connection (HTTP/1: the fast request's own).
					idle := int64(2)
					if p == h2TLS || p == h2C {
						idle = 0 // the one connection is active
					}
					if idle > 0 {
						v.waitState(t, idle, http.StateIdle)
					}
					stopped := make(chan error, 1)
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					switch how {
					case "Shutdown past its deadline":
						ctx, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
						defer cancel()
						fallthrough
					case "Shutdown":
						go func() { stopped <- srv.Shutdown(ctx) }()
						within(t, onShutdown) // the listener is closed by then
					case "Close":
						stopped <- srv.Close()
					}
					u, _ := url.Parse(env.url)
					if c, err := net.Dial("tcp", u.Host); err != nil {
						out = append(out, "a new connection: "+describeErr(err))
					} else {
						c.Close()
						out = append(out, "a new connection: accepted")
					}
					if idle > 0 {
						v.waitState(t, idle, http.StateClosed)
					}
					if how == "Shutdown past its deadline" {
						out = append(out, fmt.Sprintf("stopped: %v (is DeadlineExceeded %v)", within(t, stopped), errors.Is(ctx.Err(), context.DeadlineExceeded)))
					}
					close(release)
					out = append(out, "slow: "+within(t, slow))
					if how != "Shutdown past its deadline" {
						out = append(out, fmt.Sprintf("stopped: %v", within(t, stopped)))
					}
					if hj != nil {
						// Still the handler's: net/http neither closed it nor
						// waited for it.
						io.WriteString(hj, "still open")
						hj.Close()
						got, err := io.ReadAll(raw)
						out = append(out, fmt.Sprintf("hijacked: %q %v", got, err))
					}
					v.settle(t, env)
					return strings.Join(out, "\n") + "\nserver: " + v.String()
				})
			})
		}
	}
}

// TestDifferentialServerHooks: what the program's own server hooks and
// handler see: BaseContext and ConnContext values in the request's
// context, the server and local address under net/http's keys, the
// request's RemoteAddr, TLS, Proto, and the ErrorLog's lines (a panic, a
// failed TLS handshake, plain HTTP to the TLS port).
func TestDifferentialServerHooks(t *testing.T) {
	type baseKey struct{}
	for _, p := range []diffProto{h1, h1TLS, h2TLS, h2C} {
		t.Run(p.String(), func(t *testing.T) {
			diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
				var v serverView
				var errLog syncBuffer
				srv := v.hook(&http.Server{ErrorLog: log.New(&errLog, "", 0)})
				var bases atomic.Int64
				srv.BaseContext = func(ln net.Listener) context.Context {
					bases.Add(1)
					return context.WithValue(context.Background(), baseKey{}, "base")
				}
				srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					ctx := r.Context()
					c, n := connOf(r)
					la, _ := ctx.Value(http.LocalAddrContextKey).(net.Addr)
					v.logf("conn %d req %d %s %s: base %v, server the program's %v, local addr %T %v, remote %v, TLS %v, Host %q, ctx err %v",
						c, n, r.Method, r.Proto, ctx.Value(baseKey{}), ctx.Value(http.ServerContextKey) == srv,
						la, la != nil && la.String() == r.Host, r.RemoteAddr != "" && r.RemoteAddr != la.String(), r.TLS != nil, r.Host, ctx.Err())
					if r.URL.Path == "/panic" {
						panic("the handler's panic")
					}
				})
				env := startDiff(t, m, p, srv, h2cOneConn(p, nil))
				var out []string
				for _, path := range []string{"/", "/panic", "/"} {
					req, _ := http.NewRequestWithContext(bound(t), "GET", env.url+path, nil)
					out = append(out, describe(env.client.Do(req)))
				}
				if p == h1TLS || p == h2TLS {
					// A client that does not trust the certificate, and
					// one that speaks plain HTTP to the TLS port.
					c, err := tls.Dial("tcp", strings.TrimPrefix(env.url, "https://"), &tls.Config{})
					if err == nil {
						c.Close()
					}
					out = append(out, "untrusting client: "+describeErr(err))
					raw, _ := net.Dial("tcp", strings.TrimPrefix(env.url, "https://"))
					io.WriteString(raw, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
					got, _ := io.ReadAll(raw)
					raw.Close()
					out = append(out, fmt.Sprintf("plain HTTP to TLS: %q", got))
				}
				v.settle(t, env)
				// The panic's stack names the handler's frames, the spy's
				// too: the first lines only. Sorted: connections log on
				// goroutines of their own.
				var lines []string
				for l := range strings.Lines(errLog.String()) {
					if strings.HasPrefix(l, "http: ") || strings.HasPrefix(l, "http2: ") {
						lines = append(lines, strings.TrimSpace(l))
					}
				}
				slices.Sort(lines)
				return fmt.Sprintf("%s\nserver: %s\nBaseContext calls %d\nErrorLog: %s", strings.Join(out, "\n"), &v, bases.Load(), strings.Join(lines, " | "))
			})
		})
	}
}

// shapes is the ConnState sequences of v's connections, sorted: for runs
// where which connection did what is a race, but how many did is not.
func (v *serverView) shapes() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for _, s := range v.states {
		out = append(out, fmt.Sprint(s))
	}
	slices.Sort(out)
	return fmt.Sprintf("conns %d: %s", v.conns.Load(), strings.Join(out, " "))
}

// TestDifferentialTransportSettings: the program's own Transport settings
// still rule what the instrumented transport does: how many connections,
// which are kept, compression, the response header timeout, and a Clone
// of the instrumented transport.
func TestDifferentialTransportSettings(t *testing.T) {
	for _, p := range []diffProto{h1, h1TLS, h2TLS, h2C} {
		for _, tc := range []struct {
			name   string
			h1Only bool // a pool's limit: over HTTP/2, one connection carries all, and concurrent first requests may dial more, unused (see oneConn)
			setTr  func(*http.Transport)
			run    func(t *testing.T, env *diffEnv, v *serverView, get func(path string) string) string
		}{
			{"DisableKeepAlives", false, func(tr *http.Transport) { tr.DisableKeepAlives = true }, func(t *testing.T, env *diffEnv, v *serverView, get func(string) string) string {
				return get("/") + "\n" + get("/")
			}},
			{"MaxConnsPerHost", true, func(tr *http.Transport) { tr.MaxConnsPerHost = 1 }, func(t *testing.T, env *diffEnv, v *serverView, get func(string) string) string {
				var wg sync.WaitGroup
				got := make([]string, 3)
				for i := range got {
					wg.Go(func() { got[i] = get("/") })
				}
				wg.Wait()
				return strings.Join(got, "\n")
			}},
			{"MaxIdleConnsPerHost", true, func(tr *http.Transport) { tr.MaxIdleConnsPerHost = 1 }, func(t *testing.T, env *diffEnv, v *serverView, get func(string) string) string {
				var out []string
				for range 2 { // three at once, each held until all three are in
					var wg sync.WaitGroup
					got := make([]string, 3)
					for i := range got {
						wg.Go(func() { got[i] = get("/barrier") })
					}
					wg.Wait()
					out = append(out, got...)
				}
				return strings.Join(out, "\n")
			}},
			{"DisableCompression", false, func(tr *http.Transport) { tr.DisableCompression = true }, func(t *testing.T, env *diffEnv, v *serverView, get func(string) string) string {
				return get("/gzip")
			}},
			{"ResponseHeaderTimeout", false, func(tr *http.Transport) { tr.ResponseHeaderTimeout = 20 * time.Millisecond }, func(t *testing.T, env *diffEnv, v *serverView, get func(string) string) string {
				return get("/hang")
			}},
			{"IdleConnTimeout", false, func(tr *http.Transport) { tr.IdleConnTimeout = 20 * time.Millisecond }, func(t *testing.T, env *diffEnv, v *serverView, get func(string) string) string {
				first := get("/")
				v.waitState(t, 1, http.StateClosed) // the client gave up on it
				return first + "\n" + get("/")
			}},
			{"MaxResponseHeaderBytes", false, func(tr *http.Transport) { tr.MaxResponseHeaderBytes = 1 << 10 }, func(t *testing.T, env *diffEnv, v *serverView, get func(string) string) string {
				return get("/big-header")
			}},
			{"Request.Close", false, nil, func(t *testing.T, env *diffEnv, v *serverView, get func(string) string) string {
				var out []string
				for range 2 {
					req, _ := http.NewRequestWithContext(bound(t), "GET", env.url, nil)
					req.Close = true
					out = append(out, describe(env.client.Do(req)))
				}
				return strings.Join(out, "\n")
			}},
			{"Clone", false, nil, func(t *testing.T, env *diffEnv, v *serverView, get func(string) string) string {
				clone := env.tr.Clone()
				defer clone.CloseIdleConnections()
				c := &http.Client{Transport: clone}
				var out []string
				for range 2 {
					req, _ := http.NewRequestWithContext(bound(t), "GET", env.url, nil)
					out = append(out, describe(c.Do(req)))
				}
				return strings.Join(out, "\n")
			}},
		} {
			if tc.h1Only && p != h1 && p != h1TLS {
				continue
			}
			t.Run(tc.name+" "+p.String(), func(t *testing.T) {
				diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
					var v serverView
					var b barrier
					srv := v.hook(&http.Server{})
					srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						switch r.URL.Path {
						case "/barrier":
							b.wait(3)
						case "/gzip":
							v.logf("Accept-Encoding %q", r.Header.Get("Accept-Encoding"))
							w.Header().Set("Content-Encoding", "gzip")
							gz := gzip.NewWriter(w)
							io.WriteString(gz, "hello")
							gz.Close()
						case "/hang":
							<-r.Context().Done()
						case "/big-header":
							w.Header().Set("X-Big", strings.Repeat("a", 2<<10))
						}
					})
					env := startDiff(t, m, p, srv, h2cOneConn(p, tc.setTr))
					get := func(path string) string {
						req, _ := http.NewRequestWithContext(bound(t), "GET", env.url+path, nil)
						return describe(env.client.Do(req))
					}
					out := tc.run(t, env, &v, get)
					v.settle(t, env)
					return out + "\nserver: " + v.shapes()
				})
			})
		}
	}
}

// barrier holds each batch of callers until all are in.
type barrier struct {
	mu sync.Mutex
	n  int
	ch chan struct{}
}

// wait returns once n callers have called it since the last batch left,
// or after 5 s.
func (b *barrier) wait(n int) {
	b.mu.Lock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	ch := b.ch
	if b.n++; b.n == n {
		close(ch)
		b.ch, b.n = nil, 0
	}
	b.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
	}
}

// TestDifferentialProxy: the program's own Transport.Proxy, a real HTTP
// proxy on the loopback: requests in absolute form for http://, a CONNECT
// tunnel for https:// (HTTP/2 inside it too), with credentials; a proxy
// that refuses them (407), and one that is not there.
func TestDifferentialProxy(t *testing.T) {
	refusedAddr := refused.Addr(t)
	for _, p := range []diffProto{h1, h1TLS, h2TLS} {
		for _, how := range []string{"tunnel", "refused credentials", "no proxy"} {
			t.Run(how+" "+p.String(), func(t *testing.T) {
				diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
					var pv serverView
					proxy := pv.hook(&http.Server{})
					fwd := &http.Transport{}
					defer fwd.CloseIdleConnections()
					var tunnels sync.WaitGroup
					proxy.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						auth := r.Header.Get("Proxy-Authorization")
						pv.logf("%s %s, Proxy-Authorization %q", r.Method, r.RequestURI, auth)
						if how == "refused credentials" {
							w.WriteHeader(http.StatusProxyAuthRequired)
							return
						}
						if r.Method != http.MethodConnect {
							r.RequestURI = ""
							r.Header.Del("Proxy-Authorization")
							resp, err := fwd.RoundTrip(r.WithContext(context.WithoutCancel(r.Context())))
							if err != nil {
								http.Error(w, err.Error(), http.StatusBadGateway)
								return
							}
							defer resp.Body.Close()
							w.WriteHeader(resp.StatusCode)
							io.Copy(w, resp.Body)
							return
						}
						up, err := net.Dial("tcp", r.Host)
						if err != nil {
							http.Error(w, err.Error(), http.StatusBadGateway)
							return
						}
						c, brw, err := http.NewResponseController(w).Hijack()
						if err != nil {
							up.Close()
							return
						}
						io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
						tunnels.Go(func() {
							defer c.Close()
							defer up.Close()
							go func() { io.Copy(up, brw); up.(*net.TCPConn).CloseWrite() }()
							io.Copy(c, up)
						})
					})
					pln, err := net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						t.Fatal(err)
					}
					if m.server { // the proxy is the program's too: its CONNECT hijacks through the spy
						spy := &connscope.Spy{Sink: &memSink{}}
						httpscope.InstrumentServer(spy, proxy, nil)
						pln = spy.WrapListener(pln)
					}
					go proxy.Serve(pln)
					defer func() { proxy.Close(); tunnels.Wait() }()
					proxyURL := &url.URL{Scheme: "http", User: url.UserPassword("u", "p"), Host: pln.Addr().String()}
					if how == "no proxy" {
						proxyURL.Host = refusedAddr
					}
					var connectStatus []int
					var mu sync.Mutex
					var v serverView
					env := startDiff(t, m, p, v.hook(&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						fmt.Fprintf(w, "%s %s", r.Proto, r.URL)
					})}), func(tr *http.Transport) {
						tr.Proxy = http.ProxyURL(proxyURL)
						tr.OnProxyConnectResponse = func(_ context.Context, _ *url.URL, _ *http.Request, resp *http.Response) error {
							mu.Lock()
							connectStatus = append(connectStatus, resp.StatusCode)
							mu.Unlock()
							return nil
						}
					})
					var out []string
					for range 2 {
						req, _ := http.NewRequestWithContext(bound(t), "GET", env.url+"/x", nil)
						out = append(out, describe(env.client.Do(req)))
					}
					fwd.CloseIdleConnections() // the proxy's, to the server
					v.settle(t, env)
					pv.settle(t, env)
					mu.Lock()
					defer mu.Unlock()
					return fmt.Sprintf("%s\nOnProxyConnectResponse %v\nproxy: %s\nserver: %s", strings.Join(out, "\n"), connectStatus, &pv, &v)
				})
			})
		}
	}
}

// h2cOneConn is set, and over h2c also oneConn: sequential requests may
// otherwise dial a second connection that HTTP/2 closes unused, bare or
// not.
func h2cOneConn(p diffProto, set func(*http.Transport)) func(*http.Transport) {
	return func(tr *http.Transport) {
		if set != nil {
			set(tr)
		}
		if p == h2C {
			oneConn(tr)
		}
	}
}

// TestDifferentialProgramTrace: the program's own ClientTrace, which the
// instrumented transport composes with its own, gets every hook as often
// and with what it got bare; and the TLS state both ends see.
func TestDifferentialProgramTrace(t *testing.T) {
	for _, p := range []diffProto{h1, h1TLS, h2TLS, h2C} {
		t.Run(p.String(), func(t *testing.T) {
			diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
				var v serverView
				srv := v.hook(&http.Server{})
				srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.TLS != nil {
						v.logf("r.TLS: version %x, ALPN %q, server name %q, complete %v, peer certificates %d",
							r.TLS.Version, r.TLS.NegotiatedProtocol, r.TLS.ServerName, r.TLS.HandshakeComplete, len(r.TLS.PeerCertificates))
					}
					io.WriteString(w, "ok")
				})
				env := startDiff(t, m, p, srv, h2cOneConn(p, nil))
				var out []string
				for range 2 {
					var mu sync.Mutex
					hooks := map[string][]string{}
					note := func(hook string, format string, args ...any) {
						mu.Lock()
						hooks[hook] = append(hooks[hook], fmt.Sprintf(format, args...))
						mu.Unlock()
					}
					ctx := httptrace.WithClientTrace(bound(t), &httptrace.ClientTrace{
						GetConn:              func(hostPort string) { note("GetConn", "%s", hostPort) },
						GotConn:              func(i httptrace.GotConnInfo) { note("GotConn", "reused %v was idle %v", i.Reused, i.WasIdle) },
						PutIdleConn:          func(err error) { note("PutIdleConn", "%v", err) },
						GotFirstResponseByte: func() { note("GotFirstResponseByte", "") },
						DNSStart:             func(i httptrace.DNSStartInfo) { note("DNSStart", "%s", i.Host) },
						ConnectStart:         func(network, addr string) { note("ConnectStart", "%s %s", network, addr) },
						ConnectDone:          func(network, addr string, err error) { note("ConnectDone", "%s %s %v", network, addr, err) },
						TLSHandshakeStart:    func() { note("TLSHandshakeStart", "") },
						TLSHandshakeDone: func(cs tls.ConnectionState, err error) {
							note("TLSHandshakeDone", "%x %q %v", cs.Version, cs.NegotiatedProtocol, err)
						},
						WroteHeaderField: func(key string, _ []string) { note("WroteHeaderField", "%s", key) },
						WroteHeaders:     func() { note("WroteHeaders", "") },
						WroteRequest:     func(i httptrace.WroteRequestInfo) { note("WroteRequest", "%v", i.Err) },
					})
					req, _ := http.NewRequestWithContext(ctx, "GET", env.url, nil)
					resp, err := env.client.Do(req)
					d := describe(resp, err)
					if err == nil && resp.TLS != nil {
						d += fmt.Sprintf("; resp.TLS: server name %q, complete %v, resumed %v, peer certificates %d, verified chains %d",
							resp.TLS.ServerName, resp.TLS.HandshakeComplete, resp.TLS.DidResume, len(resp.TLS.PeerCertificates), len(resp.TLS.VerifiedChains))
					}
					mu.Lock()
					names := slices.Sorted(maps.Keys(hooks))
					for _, n := range names {
						if n == "WroteHeaderField" {
							slices.Sort(hooks[n]) // HTTP/2 writes them in its own order
						}
						d += fmt.Sprintf("\n  %s %q", n, hooks[n])
					}
					mu.Unlock()
					out = append(out, d)
				}
				v.settle(t, env)
				return strings.Join(out, "\n") + "\nserver: " + v.String()
			})
		})
	}
}

// TestDifferentialContextCause: a request's context ended with a cause of
// the program's (WithCancelCause, WithTimeoutCause), waiting for the
// answer or reading the body, and a TLS handshake that times out
// (Transport.TLSHandshakeTimeout): the instrumented request is made with a
// context of httpscope's own around the program's, which must hand the
// cause through.
func TestDifferentialContextCause(t *testing.T) {
	errCause := errors.New("the program's cause")
	// HTTP/1 only: net/http's HTTP/2 client reports the context's error,
	// not its cause.
	for _, p := range []diffProto{h1} {
		for _, how := range []string{"cancel awaiting headers", "cancel reading the body", "timeout awaiting headers", "timeout reading the body"} {
			t.Run(how+" "+p.String(), func(t *testing.T) {
				diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
					var v serverView
					srv := v.hook(&http.Server{})
					srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						if strings.HasSuffix(how, "body") {
							io.WriteString(w, "part")
							http.NewResponseController(w).Flush()
						}
						<-r.Context().Done()
						v.logf("the handler's context: %v", context.Cause(r.Context()))
					})
					env := startDiff(t, m, p, srv, h2cOneConn(p, nil))
					var ctx context.Context
					var cancel func()
					if strings.HasPrefix(how, "cancel") {
						c, cancelCause := context.WithCancelCause(bound(t))
						ctx, cancel = c, func() { cancelCause(errCause) }
					} else {
						ctx, cancel = context.WithTimeoutCause(bound(t), 30*time.Millisecond, errCause)
						defer cancel()
						cancel = func() {} // the timer does it
					}
					req, _ := http.NewRequestWithContext(ctx, "GET", env.url, nil)
					var out string
					if strings.HasSuffix(how, "body") {
						resp, err := env.client.Do(req)
						if err != nil {
							out = describe(resp, err)
						} else {
							buf := make([]byte, 4)
							_, err := io.ReadFull(resp.Body, buf)
							cancel()
							rest, err2 := io.ReadAll(resp.Body)
							resp.Body.Close()
							out = fmt.Sprintf("%s %s: %q %v, then %q %s, is the cause %v", resp.Proto, resp.Status, buf, err, rest, describeErr(err2), errors.Is(err2, errCause))
						}
					} else {
						if strings.HasPrefix(how, "cancel") {
							go func() { time.Sleep(30 * time.Millisecond); cancel() }()
						}
						resp, err := env.client.Do(req)
						out = fmt.Sprintf("%s, is the cause %v", describe(resp, err), errors.Is(err, errCause))
					}
					v.settle(t, env)
					return out + "\nserver: " + v.String()
				})
			})
		}
	}
	t.Run("TLSHandshakeTimeout", func(t *testing.T) {
		hang := hangingListener(t)
		diffEach(t, diffClientModes, h1, func(t *testing.T, m diffMode) string {
			env := startDiff(t, m, h1, &http.Server{}, func(tr *http.Transport) { tr.TLSHandshakeTimeout = 20 * time.Millisecond })
			req, _ := http.NewRequestWithContext(bound(t), "GET", "https://"+hang, nil)
			return describe(env.client.Do(req))
		})
	})
}

// programTLSConn is a TLS connection type of a program's own: a *tls.Conn
// in a struct (to count, to carry what a PROXY header said, ...). net/http
// takes a connection that is not a *tls.Conn but has ConnectionState for
// a TLS one over HTTP/1: it sets Request.TLS from it.
type programTLSConn struct{ *tls.Conn }

// programTLSListener hands out programTLSConn, handshaken.
type programTLSListener struct {
	net.Listener
	cfg *tls.Config
}

func (l programTLSListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := tls.Server(c, l.cfg)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return programTLSConn{tc}, nil // net/http's first read fails
	}
	tc.SetDeadline(time.Time{})
	return programTLSConn{tc}, nil
}

// TestDifferentialProgramTLSConn: a listener that hands out TLS
// connections of the program's own type, wrapped by the spy above TLS, as
// a listener from tls.NewListener may be: the handler still gets
// Request.TLS.
func TestDifferentialProgramTLSConn(t *testing.T) {
	cert, pool := diffCert(t)
	diffEach(t, []diffMode{diffBare, diffServer}, h1TLS, func(t *testing.T, m diffMode) string {
		var v serverView
		srv := v.hook(&http.Server{})
		srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS == nil {
				v.logf("%s, no TLS", r.Proto)
				return
			}
			v.logf("%s, TLS %x %q complete %v", r.Proto, r.TLS.Version, r.TLS.NegotiatedProtocol, r.TLS.HandshakeComplete)
		})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var pln net.Listener = programTLSListener{ln, &tls.Config{Certificates: []tls.Certificate{cert}}}
		if m.server {
			spy := &connscope.Spy{Sink: &memSink{}}
			httpscope.InstrumentServer(spy, srv, nil)
			pln = spy.WrapListener(pln)
			defer func() {
				if n := spy.Stats().NotSpied; n != 1 {
					t.Errorf("Stats().NotSpied = %d, want 1", n)
				}
			}()
		}
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(pln) }()
		defer func() { srv.Close(); <-done }()
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(bound(t), "GET", "https://"+ln.Addr().String(), nil)
		out := describe((&http.Client{Transport: tr}).Do(req))
		v.settle(t, &diffEnv{tr: tr})
		return out + "\nserver: " + v.String()
	})
}

// TestDifferentialServerMisuseLog: net/http's HTTP/1 server logs a
// superfluous WriteHeader, and a WriteHeader or Write after a hijack, with
// the first caller outside net/http: the handler's line, not the
// instrumented server's ResponseWriter. (With log.Lshortfile, the log's
// own file:line differs: see README.)
func TestDifferentialServerMisuseLog(t *testing.T) {
	for _, p := range []diffProto{h1, h1TLS, h2TLS} {
		t.Run(p.String(), func(t *testing.T) {
			diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
				var errLog syncBuffer
				var v serverView
				srv := v.hook(&http.Server{ErrorLog: log.New(&errLog, "", 0)})
				srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					switch r.URL.Path {
					case "/twice":
						w.WriteHeader(http.StatusAccepted)
						w.WriteHeader(http.StatusInternalServerError)
					case "/error-after-write":
						io.WriteString(w, "x")
						http.Error(w, "e", http.StatusInternalServerError)
					case "/flush-then-header":
						http.NewResponseController(w).Flush()
						w.WriteHeader(http.StatusInternalServerError)
					case "/hijack":
						c, _, err := http.NewResponseController(w).Hijack()
						if err != nil {
							return
						}
						w.WriteHeader(http.StatusOK)
						_, err1 := w.Write([]byte("x"))
						_, err2 := io.WriteString(w, "y")
						_, err3 := w.Write(nil)
						v.logf("after the hijack: %v, %v, %v", err1, err2, err3)
						io.WriteString(c, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
						c.Close()
					}
				})
				env := startDiff(t, m, p, srv, nil)
				var out []string
				for _, path := range []string{"/twice", "/error-after-write", "/flush-then-header", "/hijack"} {
					req, _ := http.NewRequestWithContext(bound(t), "GET", env.url+path, nil)
					out = append(out, describe(env.client.Do(req)))
				}
				v.settle(t, env)
				return fmt.Sprintf("%s\nserver: %s\nErrorLog:\n%s", strings.Join(out, "\n"), &v, errLog.String())
			})
		})
	}
}

// TestDifferentialBodyAfterClose: reading a body after its Close, the
// response's (which httpscope wraps over HTTP/2, and under Client.Timeout)
// and the request's in the handler.
func TestDifferentialBodyAfterClose(t *testing.T) {
	for _, p := range []diffProto{h1, h2TLS} {
		for _, timeout := range []time.Duration{0, time.Minute} {
			t.Run(fmt.Sprintf("%s Client.Timeout %v", p, timeout), func(t *testing.T) {
				diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
					var v serverView
					srv := v.hook(&http.Server{})
					srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						r.Body.Close()
						_, err := r.Body.Read(make([]byte, 1))
						v.logf("request body after Close: %v, is http.ErrBodyReadAfterClose %v", err, errors.Is(err, http.ErrBodyReadAfterClose))
						io.WriteString(w, strings.Repeat("x", 100))
					})
					env := startDiff(t, m, p, srv, nil)
					env.client.Timeout = timeout
					req, _ := http.NewRequestWithContext(bound(t), "POST", env.url, strings.NewReader("body"))
					resp, err := env.client.Do(req)
					if err != nil {
						return describe(resp, err)
					}
					resp.Body.Read(make([]byte, 10))
					resp.Body.Close()
					n, err := resp.Body.Read(make([]byte, 10))
					v.settle(t, env)
					return fmt.Sprintf("response body after Close: %d %s\nserver: %s", n, describeErr(err), &v)
				})
			})
		}
	}
}

// within receives from ch, or fails the test after 5 s.
func within[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("timed out")
		panic("unreachable")
	}
}

// TestDifferentialServerHeaderAfterEmptyCopy: an io.Copy into the writer
// (its ReadFrom, over HTTP/1) that copies nothing, because its source is
// empty or fails at once, writes no header: the status the handler sets
// next is the response's, as http.Error's after a failed upstream. The
// instrumented writer took any ReadFrom for a written header, and
// swallowed that status as a superfluous WriteHeader: the client got 200.
func TestDifferentialServerHeaderAfterEmptyCopy(t *testing.T) {
	for _, p := range []diffProto{h1, h1TLS, h2TLS} {
		t.Run(p.String(), func(t *testing.T) {
			diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
				var errLog syncBuffer
				var v serverView
				srv := v.hook(&http.Server{ErrorLog: log.New(&errLog, "", 0)})
				srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					switch r.URL.Path {
					case "/failed-copy":
						if _, err := io.Copy(w, iotest.ErrReader(errors.New("upstream failed"))); err != nil {
							http.Error(w, err.Error(), http.StatusBadGateway)
						}
					case "/empty-copy":
						empty := struct{ io.Reader }{strings.NewReader("")} // no WriteTo: io.Copy calls ReadFrom
						if n, _ := io.Copy(w, empty); n == 0 {
							w.WriteHeader(http.StatusNoContent)
						}
					case "/copy-past-length":
						// Nothing copied, but the header went out with the
						// 200 the first byte implied, before the byte was
						// refused: the WriteHeader after is superfluous.
						w.Header().Set("Content-Length", "0")
						if _, err := io.Copy(w, struct{ io.Reader }{strings.NewReader("x")}); err != nil {
							w.WriteHeader(http.StatusInternalServerError)
						}
					}
				})
				env := startDiff(t, m, p, srv, nil)
				var out []string
				var statuses []int
				for _, path := range []string{"/failed-copy", "/empty-copy", "/copy-past-length"} {
					req, _ := http.NewRequestWithContext(bound(t), "GET", env.url+path, nil)
					resp, err := env.client.Do(req)
					if err == nil {
						statuses = append(statuses, resp.StatusCode)
					}
					out = append(out, describe(resp, err))
				}
				v.settle(t, env)
				if m.server {
					// The server's events say what the client got.
					var logged []int
					for _, e := range env.sink.events(connscope.Server) {
						if e.Msg == connscope.MsgResponse {
							logged = append(logged, e.Status)
						}
					}
					if !slices.Equal(logged, statuses) {
						t.Errorf("%s: server events' statuses %v, the client got %v", m.name, logged, statuses)
					}
				}
				return fmt.Sprintf("%s\nserver: %s\nErrorLog:\n%s", strings.Join(out, "\n"), &v, errLog.String())
			})
		})
	}
}
