package httpscope_test

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptrace"
	"net/textproto"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
	"github.com/connscope/connscope/internal/refused"
	"github.com/connscope/connscope/internal/selfsigned"
)

// Differential tests: the same scenario run bare and instrumented, over
// real sockets on 127.0.0.1, must show the program the same thing.

// diffMode says which sides of a run are instrumented.
type diffMode struct {
	name           string
	client, server bool
}

var (
	diffBare   = diffMode{"bare", false, false}
	diffClient = diffMode{"client", true, false}
	diffServer = diffMode{"server", false, true}
	diffBoth   = diffMode{"both", true, true}
	// diffModes are every combination, bare first: the reference.
	diffModes = []diffMode{diffBare, diffClient, diffServer, diffBoth}
	// diffClientModes are for servers that are not net/http's.
	diffClientModes = []diffMode{diffBare, diffClient}
)

// diffProto is what the client and server speak.
type diffProto int

const (
	h1    diffProto = iota // HTTP/1.1
	h1TLS                  // HTTP/1.1 over TLS
	h2TLS                  // HTTP/2 over TLS
	h2C                    // unencrypted HTTP/2 (Protocols on both sides)
)

func (p diffProto) String() string {
	return [...]string{"HTTP/1.1", "HTTP/1.1+TLS", "HTTP/2", "h2c"}[p]
}

// diffEnv is one run: a server, maybe instrumented, and a client for it.
type diffEnv struct {
	url    string
	srv    *http.Server
	tr     *http.Transport // the client's base transport
	client *http.Client
	sink   *memSink
}

// startDiff serves srv over p, instrumented if m.server says so, and
// makes a client for it, instrumented if m.client says so. The test's
// cleanup closes both.
// setTr, if not nil, configures the client's transport before it is
// instrumented.
func startDiff(t *testing.T, m diffMode, p diffProto, srv *http.Server, setTr func(*http.Transport)) *diffEnv {
	t.Helper()
	env := &diffEnv{srv: srv, sink: &memSink{}}
	spy := &connscope.Spy{Sink: env.sink}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Protocols = new(http.Protocols)
	switch p {
	case h1, h1TLS:
		srv.Protocols.SetHTTP1(true)
	case h2TLS:
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetHTTP2(true)
	case h2C:
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	overTLS := p == h1TLS || p == h2TLS
	if overTLS {
		cert, pool := diffCert(t)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	if p == h2C {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	if m.server {
		httpscope.InstrumentServer(spy, srv, nil)
		ln = spy.WrapListener(ln)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if overTLS {
			srv.ServeTLS(ln, "", "")
		} else {
			srv.Serve(ln)
		}
	}()
	if setTr != nil {
		setTr(tr)
	}
	env.tr = tr
	var rt http.RoundTripper = tr
	if m.client {
		rt = httpscope.WrapTransport(spy, tr, nil)
	}
	env.client = &http.Client{Transport: rt}
	env.url = "http://" + ln.Addr().String()
	if overTLS {
		env.url = "https://" + ln.Addr().String()
	}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
		<-done
	})
	return env
}

var diffCertOnce = sync.OnceValues(func() (tls.Certificate, error) {
	cert, _, err := selfsigned.New("127.0.0.1")
	return cert, err
})

// diffCert is one certificate for all runs (making one costs a key).
func diffCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	cert, err := diffCertOnce()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	return cert, pool
}

var addrRE = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// norm takes the ports out of s: each run has its own server.
func norm(s string) string { return addrRE.ReplaceAllString(s, "127.0.0.1:PORT") }

// diff runs observe in each mode over p, each with its own server from
// newServer, and fails where a mode saw something other than bare did
// (ports aside).
func diff(t *testing.T, modes []diffMode, p diffProto, newServer func() *http.Server, observe func(t *testing.T, env *diffEnv) string) {
	t.Helper()
	diffWith(t, modes, p, newServer, nil, observe)
}

// diffWith is diff with setTr for startDiff.
func diffWith(t *testing.T, modes []diffMode, p diffProto, newServer func() *http.Server, setTr func(*http.Transport), observe func(t *testing.T, env *diffEnv) string) {
	t.Helper()
	var ref string
	for i, m := range modes {
		env := startDiff(t, m, p, newServer(), setTr)
		got := norm(observe(t, env))
		if i == 0 {
			ref = got
			continue
		}
		if got != ref {
			t.Errorf("%s: instrumented %s differs from bare:\nbare:   %s\n%-7s %s", p, m.name, ref, m.name+":", got)
		}
	}
}

// wrapForDiff instruments tr, as startDiff does for a client.
func wrapForDiff(tr *http.Transport) http.RoundTripper {
	return httpscope.WrapTransport(&connscope.Spy{Sink: &memSink{}}, tr, nil)
}

// TestDifferentialGuards: comparisons that show no difference, kept
// because each guards something the instrumentation could break: an error
// that net/http inspects by its concrete type (a TLS record header),
// http.Client.Timeout's pre-context path at every phase (see cancelBefore),
// the response fields and bodies that httpscope wraps or hands back, the
// program's own ClientTrace composed with the spy's.
func TestDifferentialGuards(t *testing.T) {
	hang := hangingListener(t)
	refusedAddr := refused.Addr(t)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/gzip":
			w.Header().Set("Content-Encoding", "gzip")
			gz := gzip.NewWriter(w)
			io.WriteString(gz, "hello")
			gz.Close()
		case "/trailer":
			w.Header().Set("Trailer", "X-T")
			w.Header().Set("Link", "</a>")
			w.WriteHeader(http.StatusEarlyHints)
			io.WriteString(w, "body")
			w.Header().Set("X-T", "v")
		case "/reset-headers": // the connection reset mid-headers
			c, brw, err := http.NewResponseController(w).Hijack()
			if err == nil {
				brw.WriteString("HTTP/1.1 200 OK\r\nContent-Le")
				brw.Flush()
				c.(interface{ SetLinger(int) error }).SetLinger(0)
				c.Close()
			}
		case "/upgrade":
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "echo")
			w.WriteHeader(http.StatusSwitchingProtocols)
			c, brw, err := http.NewResponseController(w).Hijack()
			if err == nil {
				line, _ := brw.ReadString('\n')
				brw.WriteString("echo " + line)
				brw.Flush()
				c.Close()
			}
		case "/redirect":
			http.SetCookie(w, &http.Cookie{Name: "c", Value: "1"})
			http.Redirect(w, r, "/hang", http.StatusFound)
		case "/hang": // part of the body, then nothing: the client's timeout ends it
			fmt.Fprintf(w, "cookie %q;", r.Header.Get("Cookie"))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case "/read": // the request's body first
			_, err := io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, err)
		default:
			io.WriteString(w, "ok")
		}
	})
	all := []diffProto{h1, h1TLS, h2TLS, h2C}
	get := func(path string, timeout time.Duration) func(t *testing.T, env *diffEnv) string {
		return func(t *testing.T, env *diffEnv) string {
			env.client.Timeout = timeout
			return describe(env.client.Get(env.url + path))
		}
	}
	for _, tc := range []struct {
		name    string
		protos  []diffProto
		modes   []diffMode
		setTr   func(*http.Transport)
		observe func(t *testing.T, env *diffEnv) string
	}{
		{"refused dial", []diffProto{h1}, diffClientModes, nil, func(t *testing.T, env *diffEnv) string {
			return describe(env.client.Get("http://" + refusedAddr))
		}},
		{"untrusted certificate", []diffProto{h2TLS}, diffModes, func(tr *http.Transport) { tr.TLSClientConfig.RootCAs = nil }, get("/", 0)},
		{"HTTP answer to HTTPS", []diffProto{h1}, diffModes, nil, func(t *testing.T, env *diffEnv) string {
			env.client.Timeout = time.Minute
			return describe(env.client.Get("https" + strings.TrimPrefix(env.url, "http")))
		}},
		{"reset mid-headers", []diffProto{h1}, diffModes, nil, get("/reset-headers", time.Minute)},
		{"request body fails", []diffProto{h1, h2TLS}, diffModes, nil, func(t *testing.T, env *diffEnv) string {
			body := io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(errors.New("the program's body failed")))
			req, _ := http.NewRequest("POST", env.url+"/read", body)
			req.ContentLength = 10
			return describe(env.client.Do(req))
		}},
		{"Client.Timeout dialing", []diffProto{h1}, diffClientModes, func(tr *http.Transport) {
			tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { <-ctx.Done(); return nil, ctx.Err() }
		}, get("/", 100*time.Millisecond)},
		{"Client.Timeout in the TLS handshake", []diffProto{h1}, diffClientModes, nil, func(t *testing.T, env *diffEnv) string {
			env.client.Timeout = 100 * time.Millisecond
			return describe(env.client.Get("https://" + hang))
		}},
		{"cancel in the TLS handshake", []diffProto{h1}, diffClientModes, nil, func(t *testing.T, env *diffEnv) string {
			ctx, cancel := context.WithCancel(context.Background())
			defer time.AfterFunc(50*time.Millisecond, cancel).Stop()
			req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+hang, nil)
			return describe(env.client.Do(req))
		}},
		{"Client.Timeout after a redirect", []diffProto{h1, h2TLS}, diffModes, nil, func(t *testing.T, env *diffEnv) string {
			env.client.Jar, _ = cookiejar.New(nil)
			var via []string
			env.client.CheckRedirect = func(req *http.Request, v []*http.Request) error {
				via = append(via, fmt.Sprintf("%s after %d from %s", req.URL.Path, req.Response.StatusCode, v[len(v)-1].URL.Path))
				return nil
			}
			return fmt.Sprint(get("/redirect", 150*time.Millisecond)(t, env), " via ", via)
		}},
		{"responses", all, diffModes, nil, func(t *testing.T, env *diffEnv) string {
			var out []string
			for _, m := range []string{"GET", "HEAD"} {
				for _, path := range []string{"/gzip", "/trailer"} {
					var got1xx []int
					ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
						Got1xxResponse: func(code int, _ textproto.MIMEHeader) error { got1xx = append(got1xx, code); return nil },
					})
					req, _ := http.NewRequestWithContext(ctx, m, env.url+path, nil)
					resp, err := env.client.Do(req)
					same := err == nil && resp.Request == req
					out = append(out, fmt.Sprintf("%s %s: %s 1xx %v, resp.Request the request's: %v", m, path, describe(resp, err), got1xx, same))
				}
			}
			return strings.Join(out, "\n")
		}},
		{"101's body writable", []diffProto{h1}, diffModes, nil, func(t *testing.T, env *diffEnv) string {
			req, _ := http.NewRequest("GET", env.url+"/upgrade", nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "echo")
			resp, err := env.client.Do(req)
			if err != nil {
				return describe(resp, err)
			}
			defer resp.Body.Close()
			rw, ok := resp.Body.(io.ReadWriteCloser)
			if !ok {
				return fmt.Sprintf("%s: the body (%T) is no io.ReadWriteCloser", resp.Status, resp.Body)
			}
			io.WriteString(rw, "hi\n")
			line, err := bufio.NewReader(rw).ReadString('\n')
			return fmt.Sprintf("%s: %q %v", resp.Status, line, err)
		}},
	} {
		for _, p := range tc.protos {
			t.Run(tc.name+" "+p.String(), func(t *testing.T) {
				diffWith(t, tc.modes, p, func() *http.Server {
					return &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
				}, tc.setTr, tc.observe)
			})
		}
	}
}

// describe is what the program sees of a response, or of its error: the
// error's text, the types down its chain and what errors.Is and As find.
// The body is read to its end.
func describe(resp *http.Response, err error) string {
	if err != nil {
		return "error " + describeErr(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	s := fmt.Sprintf("%s %s, length %d, close %v, uncompressed %v, TLS %v, trailer %v, body %q", resp.Proto, resp.Status,
		resp.ContentLength, resp.Close, resp.Uncompressed, resp.TLS != nil, resp.Trailer, body)
	if resp.TLS != nil {
		s += fmt.Sprintf(" (TLS %x %q)", resp.TLS.Version, resp.TLS.NegotiatedProtocol)
	}
	if err != nil {
		s += ", reading it: " + describeErr(err)
	}
	return s
}

func describeErr(err error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%q, types", err.Error())
	for e := err; e != nil; e = errors.Unwrap(e) {
		fmt.Fprintf(&b, " %T", e)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		fmt.Fprintf(&b, ", timeout %v", ne.Timeout())
	}
	for _, target := range []error{context.Canceled, context.DeadlineExceeded, syscall.ECONNRESET, syscall.ECONNREFUSED,
		io.EOF, io.ErrUnexpectedEOF, http.ErrSchemeMismatch} {
		if errors.Is(err, target) {
			fmt.Fprintf(&b, ", is %q", target)
		}
	}
	var op *net.OpError
	if errors.As(err, &op) {
		fmt.Fprintf(&b, ", net.OpError %s", op.Op)
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		b.WriteString(", a certificate verification error")
	}
	return b.String()
}

// hangingListener accepts connections and says nothing on them until the
// test ends; it returns its address.
func hangingListener(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}
