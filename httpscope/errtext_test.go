package httpscope_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connscope/connscope"
	"github.com/connscope/connscope/httpscope"
)

// TestErrorTextsRedacted: errors that quote the request's URL or target
// are written with what a target hides hidden, in every format, while the
// program gets its error unchanged. Each case fails a real request.
func TestErrorTextsRedacted(t *testing.T) {
	echo := startEchoServer(t)
	h2base, h2pool := startTLS(t, nil, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	h2url, _ := url.Parse(h2base)
	refused := closedPort(t)
	for _, tc := range []struct {
		name string
		// do makes the request through a client whose transport spy
		// instruments (nil: an uninstrumented one).
		do func(spy *connscope.Spy) error
	}{
		{"response line echoing the request's", func(spy *connscope.Spy) error {
			// "malformed HTTP status code" quotes what came back: the target.
			return get1(&http.Transport{}, spy, "http://"+echo+"/x?token=s3cr3t")
		}},
		{"HTTP/2 path without a slash", func(spy *connscope.Spy) error {
			// "invalid request :path" quotes the path and query.
			req := &http.Request{Method: "GET", Header: http.Header{},
				URL: &url.URL{Scheme: "https", Host: h2url.Host, Path: "api", RawQuery: "a=1&access_token=s3cr3t"}}
			return do1(&http.Transport{TLSClientConfig: h2pool.cfg, ForceAttemptHTTP2: true}, spy, req)
		}},
		{"proxy URL with a / in its password", func(spy *connscope.Spy) error {
			// url.Parse fails: "invalid port" quotes the start of the password.
			tr := &http.Transport{Proxy: func(*http.Request) (*url.URL, error) {
				return url.Parse("http://alice:s3cr3t/x@" + refused)
			}}
			return get1(tr, spy, "http://"+echo+"/")
		}},
		{"proxy URL with a # in its password", func(spy *connscope.Spy) error {
			tr := &http.Transport{Proxy: func(*http.Request) (*url.URL, error) {
				return url.Parse("http://alice:s3cr3t#x@" + refused)
			}}
			return get1(tr, spy, "http://"+echo+"/")
		}},
		{"Host set by hand with userinfo", func(spy *connscope.Spy) error {
			// net/http dials it as it is: the name looked up, the address
			// dialed and the resolver's error hold it.
			req := &http.Request{Method: "GET", Header: http.Header{},
				URL: &url.URL{Scheme: "http", Host: "alice:s3cr3t@" + refused, Path: "/"}}
			return do1(&http.Transport{}, spy, req)
		}},
		{"RoundTripper naming the URL", func(spy *connscope.Spy) error {
			// http.DefaultClient over a RoundTripper of the program's, as
			// InstrumentDefault leaves it: its error names req.URL, whole.
			old := http.DefaultClient.Transport
			defer func() { http.DefaultClient.Transport = old }()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			http.DefaultClient.Transport = urlErrorRT{tr}
			if spy != nil {
				defer httpscope.InstrumentDefault(spy, nil)()
			}
			resp, err := http.Get("http://alice:s3cr3t@" + refused + "/x?sig=s3cr3t#s3cr3t")
			if err == nil {
				resp.Body.Close()
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bare := tc.do(nil)
			if bare == nil {
				t.Fatal("the request did not fail")
			}
			var out [4]syncBuffer
			jsonSink, textSink := connscope.NewJSONSink(&out[0], nil), connscope.NewTextSink(&out[1], nil)
			var mu sync.Mutex
			var hookErr error
			var hookText string
			spy := &connscope.Spy{
				Sink: connscope.MultiSink(jsonSink, textSink,
					connscope.NewSlogSink(slog.New(slog.NewJSONHandler(&out[2], &slog.HandlerOptions{Level: slog.LevelDebug}))),
					connscope.NewSlogSink(slog.New(slog.NewTextHandler(&out[3], &slog.HandlerOptions{Level: slog.LevelDebug})))),
				Hooks: connscope.Hooks{Event: func(e *connscope.Event) {
					if e.Message == connscope.MsgRequestError {
						mu.Lock()
						hookErr, hookText = e.Err, e.ErrorText()
						mu.Unlock()
					}
				}},
			}
			err := tc.do(spy)
			jsonSink.Close()
			textSink.Close()
			// Transparency: the program's error is the one it gets without
			// the spy, secrets and all, and the event carries that error.
			if err == nil || err.Error() != bare.Error() {
				t.Errorf("program got %v, without the spy %v", err, bare)
			}
			var ue *url.Error
			mu.Lock()
			defer mu.Unlock()
			if !errors.As(err, &ue) || hookErr == nil || ue.Err != hookErr {
				t.Errorf("the event's error %#v is not the one the program got, %#v", hookErr, err)
			}
			if hookText == "" || strings.Contains(hookText, "s3cr3t") || strings.Contains(hookText, "alice") {
				t.Errorf("ErrorText() = %q", hookText)
			}
			for i, name := range []string{"JSON", "text", "slog JSON", "slog text"} {
				s := out[i].String()
				if !strings.Contains(s, connscope.MsgRequestError) {
					t.Errorf("%s: no %q event:\n%s", name, connscope.MsgRequestError, s)
				}
				for _, l := range strings.Split(s, "\n") {
					if strings.Contains(l, "s3cr3t") || strings.Contains(l, "alice") {
						t.Errorf("%s: %s", name, l)
					}
				}
			}
		})
	}
}

// get1 GETs u through a client over tr, instrumented by spy if not nil.
func get1(tr *http.Transport, spy *connscope.Spy, u string) error {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		return err
	}
	return do1(tr, spy, req)
}

func do1(tr *http.Transport, spy *connscope.Spy, req *http.Request) error {
	defer tr.CloseIdleConnections()
	var rt http.RoundTripper = tr
	if spy != nil {
		rt = httpscope.WrapTransport(spy, tr, nil)
	}
	c := &http.Client{Transport: rt, Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return err
}

// urlErrorRT fails a request with an error that names its URL, whole, as
// retrying RoundTrippers do when they give up.
type urlErrorRT struct{ next http.RoundTripper }

func (rt urlErrorRT) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.next.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s giving up after 1 attempt: %w", req.Method, req.URL, err)
	}
	return resp, nil
}

// startEchoServer serves, on loopback, a peer that sends each line of a
// request's head back: not HTTP, as a wrong port may be.
func startEchoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					l, err := br.ReadString('\n')
					if _, werr := io.WriteString(c, l); err != nil || werr != nil || l == "\r\n" {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
