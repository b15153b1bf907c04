package httpscope_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/connscope/connscope/internal/refused"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A second differential pass (see differential_test.go): what a program
// sees of its pooled connections, proxies, timeouts and shutdown.

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
	type reqCase struct {
		name    string
		method  string
		body    func() io.Reader // nil: no body
		getBody bool
		key     bool
	}
	cases := []reqCase{
		{"GET", "GET", nil, false, false},
		{"POST with GetBody", "POST", func() io.Reader { return strings.NewReader("posted") }, true, false},
		{"POST without GetBody", "POST", func() io.Reader { return io.MultiReader(strings.NewReader("posted")) }, false, false},
		{"POST with GetBody and Idempotency-Key", "POST", func() io.Reader { return strings.NewReader("posted") }, true, true},
		{"POST without GetBody, Idempotency-Key", "POST", func() io.Reader { return io.MultiReader(strings.NewReader("posted")) }, false, true},
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
						for i := range 2 {
							var body io.Reader
							if rc.body != nil {
								body = rc.body()
							}
							method := "GET"
							if i == 1 {
								method = rc.method
							} else {
								body = nil
							}
							req, _ := http.NewRequestWithContext(bound(t), method, env.url, body)
							if i == 1 && !rc.getBody {
								req.GetBody = nil
							}
							if i == 1 && rc.key {
								req.Header.Set("Idempotency-Key", "k1")
							}
							out = append(out, describe(env.client.Do(req)))
						}
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
					if r := strings.TrimPrefix(path, "/refused"); r != path {
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
		for _, path := range []string{"/read", "/refuse", "/hints", "/hints-refused", "/too-many"} {
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
						case "/too-many":
							for range 6 {
								w.WriteHeader(http.StatusEarlyHints)
							}
							io.WriteString(w, "final")
						}
					})
					env := startDiff(t, m, p, srv, func(tr *http.Transport) { tr.ExpectContinueTimeout = 5 * time.Second })
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
						<-handlerDone // only then read
						n, err := io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						out = fmt.Sprintf("%s %s: read %v bytes, %s", resp.Proto, resp.Status, n > 0, describeErr(err))
					case "/read-deadline":
						go func() { <-handlerDone; pw.Close() }()
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
