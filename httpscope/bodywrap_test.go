package httpscope_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connscope/connscope"
)

// Guards for the response body that httpscope wraps (respBody): what the
// program sees of it, bare and instrumented, and the "HTTP(S) Error" with
// op "body" it reports.

// TestResponseBodyClosedDuringRead: a body the program closes while
// another goroutine reads it (a stream it stops) is no failure, whatever
// the Close makes that Read return. The wrapper took the Read's error,
// "http2: response body closed", which comes before the inner Close
// returns, for a failed body: an "HTTP(S) Error" at error level.
func TestResponseBodyClosedDuringRead(t *testing.T) {
	for _, p := range []diffProto{h1, h2TLS, h2C} {
		t.Run(p.String(), func(t *testing.T) {
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write(make([]byte, 100))
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			})}
			env := startDiff(t, diffClient, p, srv, func(tr *http.Transport) { oneConn(tr) })
			for i := range 50 {
				resp, err := env.client.Get(env.url + "/stream")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(resp.Body, make([]byte, 100)); err != nil {
					t.Fatal(err)
				}
				if err := closeDuringRead(t, resp.Body); err == nil {
					t.Fatalf("request %d: the Read of a body closed under it succeeded", i)
				}
			}
			env.tr.CloseIdleConnections()
			for _, e := range env.sink.events(0) {
				if e.Msg == connscope.MsgRequestError {
					t.Errorf("%s for a body the program closed: %+v", e.Msg, e)
				}
			}
		})
	}
}

// TestResponseBodyFailureOnMultiplexedConnection: of several streams on
// one HTTP/2 connection, the one that fails mid-body has the one body
// "HTTP(S) Error", with its own request's number and target, before the
// connection's "Socket Idle"; the connection stays in the pool.
func TestResponseBodyFailureOnMultiplexedConnection(t *testing.T) {
	for _, p := range []diffProto{h2TLS, h2C} {
		t.Run(p.String(), func(t *testing.T) {
			release := make(chan struct{})
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "a")
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-time.After(5 * time.Second):
				}
				if r.URL.Path == "/fail" {
					panic(http.ErrAbortHandler) // the stream is reset
				}
				io.WriteString(w, "b")
			})}
			env := startDiff(t, diffClient, p, srv, func(tr *http.Transport) { oneConn(tr) })
			paths := []string{"/a", "/fail", "/b", "/c"}
			resps := make([]*http.Response, len(paths))
			for i, path := range paths {
				resp, err := env.client.Get(env.url + path)
				if err != nil {
					close(release)
					t.Fatal(err)
				}
				resps[i] = resp
			}
			close(release)
			var wg sync.WaitGroup
			errs := make([]error, len(paths))
			for i, resp := range resps {
				wg.Go(func() {
					_, errs[i] = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				})
			}
			wg.Wait()
			for i, err := range errs {
				if (err != nil) != (paths[i] == "/fail") {
					t.Fatalf("%s: body %v", paths[i], err)
				}
			}
			waitFor(t, "Socket Idle", func() bool {
				evs := env.sink.events(connscope.Client)
				return len(evs) > 0 && evs[len(evs)-1].Msg == connscope.MsgIdle
			})
			evs := env.sink.events(connscope.Client)
			var conn connscope.ID
			var failed []ev
			var failedReq uint64
			for _, e := range evs {
				if conn.IsZero() {
					conn = e.ID
				}
				if e.ID != conn {
					t.Fatalf("events %q on two connections", messages(evs))
				}
				switch {
				case e.Msg == connscope.MsgResponse && strings.HasSuffix(e.Target, "/fail"):
					failedReq = e.Request
				case e.Msg == connscope.MsgRequestError:
					failed = append(failed, e)
				}
			}
			if len(failed) != 1 {
				t.Fatalf("events %q: want one HTTP(S) Error", messages(evs))
			}
			if f := failed[0]; f.Op != "body" || f.Request != failedReq || !strings.HasSuffix(f.Target, "/fail") || f.Status != 200 {
				t.Errorf("HTTP(S) Error %+v, want op body, request %d, the target /fail, status 200", f, failedReq)
			}
		})
	}
}

// TestDifferentialResponseBodies: what a program sees of response bodies
// that httpscope wraps, or must not: read to the end, or just to their
// length, copied into a file, decompressed, with trailers, empty (the
// identity of http.NoBody), behind redirects whose bodies http.Client
// drains or closes, cut short by the server, closed under a Read. And
// which connection each request went on: a body read to its end gives
// its connection back to the pool.
func TestDifferentialResponseBodies(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 300)
	for _, p := range []diffProto{h1, h1TLS, h2TLS, h2C} {
		t.Run(p.String(), func(t *testing.T) {
			diffEach(t, diffModes, p, func(t *testing.T, m diffMode) string {
				var v serverView
				srv := v.hook(&http.Server{})
				srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					conn, req := connOf(r)
					v.logf("%s %s on conn %d, its request %d", r.Method, r.URL.Path, conn, req)
					switch r.URL.Path {
					case "/data":
						w.Header().Set("Content-Length", strconv.Itoa(len(data)))
						w.Write(data)
					case "/chunked":
						for i := 0; i < len(data); i += 1000 {
							w.Write(data[i : i+1000])
							w.(http.Flusher).Flush()
						}
					case "/gzip":
						w.Header().Set("Content-Encoding", "gzip")
						gz := gzip.NewWriter(w)
						gz.Write(data)
						gz.Close()
					case "/trailer":
						w.Header().Set("Trailer", "X-T")
						w.Write(data)
						w.Header().Set("X-T", "t")
					case "/204":
						w.WriteHeader(http.StatusNoContent)
					case "/304":
						w.WriteHeader(http.StatusNotModified)
					case "/empty":
						w.Header().Set("Content-Length", "0")
					case "/redirect-small", "/redirect-big":
						w.Header().Set("Location", "/data")
						w.WriteHeader(http.StatusFound)
						if r.URL.Path == "/redirect-big" {
							w.Write(bytes.Repeat(data, 3)) // more than http.Client drains
						} else {
							io.WriteString(w, "moved")
						}
					case "/abort":
						w.Header().Set("Content-Length", strconv.Itoa(len(data)))
						w.Write(data[:100])
						w.(http.Flusher).Flush()
						panic(http.ErrAbortHandler)
					case "/hang":
						w.Write(data[:100])
						w.(http.Flusher).Flush()
						select {
						case <-r.Context().Done():
						case <-time.After(5 * time.Second):
						}
					}
				})
				env := startDiff(t, m, p, srv, func(tr *http.Transport) { oneConn(tr) })
				var out []string
				do := func(method, path string, read func(resp *http.Response) string) {
					req, _ := http.NewRequestWithContext(bound(t), method, env.url+path, nil)
					resp, err := env.client.Do(req)
					if err != nil {
						out = append(out, fmt.Sprintf("%s %s: error %s", method, path, describeErr(err)))
						return
					}
					s := fmt.Sprintf("%s %s: %s %s, length %d, uncompressed %v, http.NoBody %v", method, path, resp.Proto, resp.Status,
						resp.ContentLength, resp.Uncompressed, resp.Body == http.NoBody)
					out = append(out, s+": "+read(resp))
					resp.Body.Close()
				}
				all := func(resp *http.Response) string {
					b, err := io.ReadAll(resp.Body)
					s := fmt.Sprintf("%d bytes, same %v, trailer %v", len(b), bytes.Equal(b, data), resp.Trailer)
					if err != nil {
						s += ", " + describeErr(err)
					}
					return s
				}
				do("GET", "/data", all)
				do("GET", "/data", func(resp *http.Response) string { // its length, not its EOF
					n, err := io.ReadFull(resp.Body, make([]byte, len(data)))
					return fmt.Sprint(n, err)
				})
				do("GET", "/chunked", func(resp *http.Response) string {
					f, err := os.Create(filepath.Join(t.TempDir(), "body"))
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					n, err := io.Copy(f, resp.Body)
					got, _ := os.ReadFile(f.Name())
					return fmt.Sprintf("copied %d %v, same %v", n, err, bytes.Equal(got, data))
				})
				do("GET", "/gzip", all)
				do("GET", "/trailer", func(resp *http.Response) string {
					before := fmt.Sprint(resp.Trailer)
					return "trailer before the end " + before + ", " + all(resp)
				})
				for _, path := range []string{"/204", "/304", "/empty"} {
					do("GET", path, all)
				}
				do("HEAD", "/data", all)
				do("GET", "/redirect-small", all)
				do("GET", "/redirect-big", all)
				do("GET", "/abort", all)
				do("GET", "/data", all)
				do("GET", "/hang", func(resp *http.Response) string {
					io.ReadFull(resp.Body, make([]byte, 100))
					// Its text depends on whether the Read was under way.
					return fmt.Sprint("read under Close failed: ", closeDuringRead(t, resp.Body) != nil)
				})
				do("GET", "/data", all)
				v.settle(t, env)
				// Not the connections' states: whether the server was done
				// with a body the client closed early is a race.
				v.mu.Lock()
				defer v.mu.Unlock()
				return fmt.Sprintf("%s\nserver: %d connections; %s", strings.Join(out, "\n"), v.conns.Load(), strings.Join(v.lines, "; "))
			})
		})
	}
}

// TestDifferentialMalformedResponseBodies: bodies of a server that is not
// net/http's, malformed after their headers (cut short, a bad chunk, bad
// or cut gzip), and one read until the server closes. The program gets
// the same bytes and error, and its next request the same connection
// (the server numbers them), instrumented or not. (A gzip body that
// fails after its last byte leaves its connection in the pool.)
func TestDifferentialMalformedResponseBodies(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte("x"), 1000))
	zw.Close()
	cut := gz.Bytes()[:gz.Len()/2]
	answers := map[string]string{
		"/short":      "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
		"/chunk":      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n",
		"/badgzip":    "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
		"/cutgzip":    "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " + strconv.Itoa(len(cut)) + "\r\n\r\n" + string(cut),
		"/untilclose": "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it",
		"/ok":         "", // says which connection it came on
	}
	paths := []string{"/short", "/chunk", "/badgzip", "/cutgzip", "/untilclose"}
	diffEach(t, diffClientModes, h1, func(t *testing.T, m diffMode) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var conns atomic.Int32
		var wg sync.WaitGroup
		var mu sync.Mutex
		var open []net.Conn
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				n := conns.Add(1)
				mu.Lock()
				open = append(open, c)
				mu.Unlock()
				wg.Go(func() {
					defer c.Close()
					br := bufio.NewReader(c)
					for {
						req, err := http.ReadRequest(br)
						if err != nil {
							return
						}
						io.Copy(io.Discard, req.Body)
						a := answers[req.URL.Path]
						if req.URL.Path == "/ok" {
							body := fmt.Sprintf("conn %d", n)
							a = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
						}
						if _, err := io.WriteString(c, a); err != nil || strings.Contains(a, "Connection: close") || strings.Contains(a, "abc") {
							return
						}
					}
				})
			}
		})
		defer func() {
			ln.Close()
			mu.Lock()
			for _, c := range open {
				c.Close()
			}
			mu.Unlock()
			wg.Wait()
		}()
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		var rt http.RoundTripper = tr
		if m.client {
			rt = wrapForDiff(tr)
		}
		client := &http.Client{Transport: rt, Timeout: 5 * time.Second}
		url := "http://" + ln.Addr().String()
		var out []string
		for _, path := range paths {
			for _, p := range []string{path, "/ok"} {
				resp, err := client.Get(url + p)
				if err != nil {
					out = append(out, p+": error "+describeErr(err))
					continue
				}
				out = append(out, p+": "+describe(resp, nil))
			}
		}
		return strings.Join(out, "\n")
	})
}

// TestDifferentialForeignResponseBody: a body that is not one of
// net/http's transports' is handed back as it is, its type and methods
// with it: one of a scheme the *http.Transport under httpscope's hands to
// another RoundTripper (RegisterProtocol: NewFileTransport's). It was
// wrapped: *httpscope.respBody where the program had an *io.PipeReader.
func TestDifferentialForeignResponseBody(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("file body"), 0o644); err != nil {
		t.Fatal(err)
	}
	diff(t, diffModes, h1, func() *http.Server {
		return &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "served") })}
	}, func(t *testing.T, env *diffEnv) string {
		env.tr.RegisterProtocol("file", http.NewFileTransport(http.Dir(dir)))
		var out []string
		show := func(what string, client *http.Client, url string) {
			resp, err := client.Get(url)
			if err != nil {
				out = append(out, what+": error "+describeErr(err))
				return
			}
			_, pipe := resp.Body.(*io.PipeReader)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			out = append(out, fmt.Sprintf("%s: %q %v, *io.PipeReader %v", what, b, err, pipe))
		}
		show("file", env.client, "file:///f")
		show("http", env.client, env.url)
		return strings.Join(out, "\n")
	})
}

// closeDuringRead closes body while another goroutine reads it, and
// returns what that Read returned.
func closeDuringRead(t *testing.T, body io.ReadCloser) error {
	reading := make(chan struct{})
	read := make(chan error, 1)
	go func() {
		close(reading)
		_, err := body.Read(make([]byte, 10))
		read <- err
	}()
	<-reading
	time.Sleep(5 * time.Millisecond) // most often, the Read is under way by then
	body.Close()
	return within(t, read)
}
